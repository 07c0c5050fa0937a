"""The pipeline's fixed shape: step names (the article's), container paths, channel and output
names, the training job's fixed hyperparameters and the metric regexes. SDK-free, so the
builder, the local runner and the tests share one description.
"""
from __future__ import annotations

PREPARE_STEP = "stylegan2Process"
TRAIN_STEP = "stylegan2train"
INFER_STEP = "stylegan2Inference"
NOTIFY_STEP = "stylegan2Notification"
STEP_ORDER = (PREPARE_STEP, TRAIN_STEP, INFER_STEP, NOTIFY_STEP)

ENTRYPOINT = "sg2-sagemaker"
PROCESSING = "/opt/ml/processing"
PREPARE_INPUT = ("input", f"{PROCESSING}/input")  # (input name, container path)
PREPARE_OUTPUT = ("train", f"{PROCESSING}/train")
DATASET_NAME = "animeface.zip"  # the article's zip name
TRAIN_CHANNEL = "train"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
INFER_MODEL_INPUT = ("model", f"{PROCESSING}/model")
INFER_DATA_INPUT = ("data", f"{PROCESSING}/data")
INFER_OUTPUT = ("results", f"{PROCESSING}/output")
INFER_RESULTS_NAME = "test"  # the article's folder under the inference output
# Passed to infer with PipelineSettings.inference_rehearsal: projection without VGG16 weights.
INFER_REHEARSAL_FLAG = "--allow-random-vgg16"
NOTIFY_SUBJECT = "StyleGAN2 Inference"

# The article's fixed hyperparameters, json.dumps'ed per value when the job is defined.
FIXED_HYPERPARAMETERS = {
    "data": f"/opt/ml/input/data/{TRAIN_CHANNEL}/{DATASET_NAME}",
    "outdir": CHECKPOINT_LOCAL_PATH,
    "metrics": "none",
}

# CloudWatch metrics scraped from the training status line (training/report.py status_line).
METRIC_DEFINITIONS = (
    {"Name": "kimg", "Regex": r"tick=\d+ kimg=([0-9.]+)"},
    {"Name": "sec_per_kimg", "Regex": r"sec_per_kimg=([0-9.]+)"},
    {"Name": "loss_G", "Regex": r"loss_G=(-?[0-9.]+)"},
    {"Name": "loss_D", "Regex": r"loss_D=(-?[0-9.]+)"},
    {"Name": "augment_p", "Regex": r"augment=([0-9.]+)"},
)
