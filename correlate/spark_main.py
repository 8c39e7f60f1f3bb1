"""The file to give spark-submit: `spark-submit --master yarn ... <this file> --input ... --output
...` runs `pamcorr spark-correlate` with those options on the cluster spark-submit chose."""

from correlate.cli_spark import spark_correlate_cmd

if __name__ == "__main__":
    spark_correlate_cmd(prog_name="pamcorr spark-correlate")
