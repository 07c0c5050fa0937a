"""The `sg2` command line. Each module registers one group of commands; heavy libraries
(torch) are imported inside the commands that need them so that start-up stays fast."""
