"""pamcorr: which approval and which ticket covered each privileged action, and which had none."""

__version__ = "0.1.0"
