"""The file to give spark-submit: `spark-submit --master yarn ... <this file> --input ... --output
...` runs `pamcorr spark-correlate` with those options on the cluster spark-submit chose."""

import sys

from correlate.cli_spark import spark_correlate_cmd
from correlate.errors import PamcorrError, printable

if __name__ == "__main__":
    try:
        spark_correlate_cmd(prog_name="pamcorr spark-correlate")
    except PamcorrError as exc:          # bad input: the message, not a traceback
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        sys.exit(1)
