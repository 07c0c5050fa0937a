"""What a finished training job leaves in <base>/model (tarred into model.tar.gz)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

SAMPLE_SEEDS = tuple(range(16))


def export_model(result, model_dir: Path) -> list[Path]:
    """model.pt (G, D, G_ema in our format), samples.png, training_options.json, README.md."""
    import numpy as np
    import torch

    from sg2_container.inference.generate import GenerateOptions, generate
    from sg2_container.io.atomic import write_atomically, write_text_atomically
    from sg2_container.io.images import write_grid
    from sg2_container.models.files import load_model

    model_dir.mkdir(parents=True, exist_ok=True)
    written = []
    model_path = model_dir / "model.pt"
    def copy_final(target):
        with open(result.final_model, "rb") as source:
            shutil.copyfileobj(source, target, length=16 * 2**20)

    write_atomically(model_path, copy_final)
    written.append(model_path)

    bundle = load_model(model_path)
    G = bundle.G_ema
    options = GenerateOptions(seeds=SAMPLE_SEEDS, truncation_psi=1.0, noise_mode="const",
                              class_idx=0 if G.c_dim > 0 else None)
    images = [image for _, image, _ in generate(G, options, torch.device("cpu"))]
    grid_path = model_dir / "samples.png"
    write_grid(np.stack(images), grid_path, columns=4)
    written.append(grid_path)

    options_src = Path(result.run_dir) / "training_options.json"
    options_dst = model_dir / "training_options.json"
    resolved = {}
    if options_src.exists():
        document = json.loads(options_src.read_text(encoding="utf-8"))
        resolved = document.get("resolved") or {}
        # The options are this run's; the model may be a longer earlier run's (a rerun with a
        # lower kimg trains nothing and exports it): say what model.pt holds.
        document["trained_kimg"] = bundle.metadata.get("kimg")
        write_text_atomically(options_dst, json.dumps(document, indent=2) + "\n")
        written.append(options_dst)
    card = model_card(bundle.metadata, G, resolved)
    write_text_atomically(model_dir / "README.md", card)
    written.append(model_dir / "README.md")
    log.info("model artifacts in %s: %s", model_dir, ", ".join(p.name for p in written))
    return written


def model_card(metadata: dict, G, resolved: dict | None = None) -> str:
    """README.md of the model: what it was trained on and with which settings, stated as they
    were in effect (`resolved`: training_options.json's "resolved" part, values the preset
    filled in), never as the unset option (None)."""
    options = metadata.get("options", {})
    resolved = resolved or {}
    gamma = resolved.get("gamma", options.get("gamma"))
    aug = options.get("aug", "?")
    if aug == "noaug":
        augmentation = "none (aug=noaug)"
    else:
        augpipe = resolved.get("augpipe") or options.get("augpipe")
        augmentation = f"{aug}, augpipe {augpipe}" if augpipe else aug
    # A conditional network renders nothing without a class: the commands say which one.
    class_text = ", class 0" if G.c_dim else ""
    class_option = " --class 0" if G.c_dim else ""
    classes = f" (`--class` 0 to {G.c_dim - 1})" if G.c_dim else ""
    lines = [
        "# StyleGAN2-ADA model (sg2-container)",
        "",
        f"- data: {metadata.get('dataset', 'unknown')}",
        f"- trained for: {metadata.get('kimg', 0):g} kimg (thousands of real images shown)",
        f"- preset (cfg): {metadata.get('cfg', options.get('cfg', 'unknown'))}",
        f"- resolution: {G.img_resolution}x{G.img_resolution}, {G.img_channels} channel(s), "
        f"{'conditional on ' + str(G.c_dim) + ' classes' if G.c_dim else 'unconditional'}",
        f"- augmentation: {augmentation}",
        f"- R1 gamma: {f'{gamma:g}' if isinstance(gamma, (int, float)) else 'unknown'}",
        f"- mirror (x-flips): {options.get('mirror')}",
        "",
        "Files: `model.pt` (G, D and G_ema; load with `sg2_container.models.files.load_model` or "
        "`torch.load(..., weights_only=True)`), "
        f"`samples.png` (seeds 0-15{class_text}, const noise), "
        "`training_options.json` (every resolved option).",
        "",
        f"Generate: `sg2 generate --network model.pt --seeds 0-7{class_option} --outdir out/`"
        f"{classes}",
        "",
        "Options: `" + json.dumps(options, sort_keys=True) + "`",
        "",
    ]
    return "\n".join(lines)
