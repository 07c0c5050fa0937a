"""The only part of the project that knows SageMaker's /opt/ml layout and job conventions."""
