"""Quality metrics (FID, KID, precision/recall, Inception score) from a detector file the user
supplies: nothing is downloaded at run time. See docs/metrics.md."""
