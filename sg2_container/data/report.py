"""What `sg2 prepare` kept, converted and dropped, as prepare_report.json and one summary line."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sg2_container.io.atomic import write_text_atomically

REPORT_FORMAT_VERSION = 1
# Bounds so that a set of a million broken files still gives a readable, bounded report.
MAX_LISTED_SKIPS = 10_000
MAX_EXAMPLES = 5

SKIP_REASONS = {
    "not_an_image": "not a PNG, JPEG, WebP, BMP or GIF file",
    "truncated": "the file ends before the image data does",
    "corrupt": "the image data cannot be decoded",
    "decompression_bomb": "more pixels than --max-pixels",
    "file_too_large": "the file is larger than any image within --max-pixels could be",
    "too_small": "smaller than the output size, with --small skip",
    "missing_label": "labels were requested but this file has none",
    "unsupported_mode": "a pixel format that cannot be converted to 8-bit gray or RGB",
    "unreadable": "the file could not be read from the source",
    "duplicate_name": "the archive holds another file of the same name (the last one is used)",
    "broken_link": "a symbolic link whose target is missing, or a loop of links",
    "not_a_file": "a FIFO, socket or device, not a regular file",
    "folder_link": "a symbolic link to a folder, which is not followed",
}
CONVERSIONS = {
    "exif_orientation": "rotated/flipped upright per its EXIF orientation",
    "cmyk_to_rgb": "CMYK converted to RGB (with its ICC profile when embedded)",
    "palette_to_rgb": "palette (indexed) colours expanded",
    "alpha_flattened": "transparency composited onto --background",
    "16bit_to_8bit": "16 bits per sample reduced to 8",
    "gray_to_rgb": "grayscale copied to three channels (--channels 3)",
    "rgb_to_gray": "colour converted to grayscale (--channels 1)",
    "bilevel_to_gray": "1-bit black and white expanded to 8-bit gray",
    "color_space_to_rgb": "YCbCr/LAB/HSV converted to RGB",
    "first_frame_only": "animated: only the first frame kept",
    "upscaled": "smaller than the output size and enlarged (--small upscale)",
}


@dataclass(slots=True)
class Report:
    """Counts per reason plus the names of skipped files (bounded); written as JSON."""

    source: str
    dest: str
    options: dict[str, object]
    output_size: tuple[int, int]
    channels: int
    num_inputs: int = 0
    num_written: int = 0
    num_skipped: int = 0
    num_unused: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    converted: Counter[str] = field(default_factory=Counter)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    converted_examples: dict[str, list[str]] = field(default_factory=dict)
    label_source: str = "none"
    label_dim: int = 0
    class_names: list[str] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    labels_without_image: int = 0
    workers: int = 1
    elapsed_s: float = 0.0

    def add_skip(self, name: str, reason: str, detail: str) -> None:
        self.num_skipped += 1
        self.skipped[reason] += 1
        if len(self.skipped_files) < MAX_LISTED_SKIPS:
            self.skipped_files.append({"name": name, "reason": reason, "detail": detail})

    def add_kept(self, name: str, converted: tuple[str, ...]) -> None:
        self.num_written += 1
        for reason in converted:
            self.converted[reason] += 1
            examples = self.converted_examples.setdefault(reason, [])
            if len(examples) < MAX_EXAMPLES:
                examples.append(name)

    def to_dict(self) -> dict[str, object]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["skipped"] = dict(sorted(self.skipped.items()))
        out["converted"] = dict(sorted(self.converted.items()))
        out["output_size"] = list(self.output_size)
        out["images_per_s"] = (
            round(self.num_processed / self.elapsed_s, 2) if self.elapsed_s else None
        )
        out["elapsed_s"] = round(self.elapsed_s, 3)
        out["skipped_files_truncated"] = self.num_skipped > len(self.skipped_files)
        out["reasons"] = {"skipped": SKIP_REASONS, "converted": CONVERSIONS}
        return {"format_version": REPORT_FORMAT_VERSION, **out}

    @property
    def num_processed(self) -> int:
        return self.num_written + self.num_skipped

    def write(self, path: Path) -> None:
        write_text_atomically(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def summary(self) -> str:
        """One line: kept, skipped by reason, converted by reason."""
        width, height = self.output_size
        mode = "RGB" if self.channels == 3 else "gray"
        line = (
            f"wrote {self.num_written} of {self.num_inputs} files as {width}x{height} {mode} "
            f"to {self.dest} in {self.elapsed_s:.1f} s"
        )
        if self.label_source != "none":
            line += f", labels from {self.label_source} (label_dim {self.label_dim})"
        line += "; skipped " + _counts(self.skipped, self.num_skipped)
        if self.num_unused:
            line += f"; {self.num_unused} not read (--max-images reached)"
        line += "; converted " + _counts(self.converted, sum(self.converted.values()))
        return line


def _counts(counter: Counter[str], total: int) -> str:
    if not total:
        return "none"
    parts = ", ".join(f"{n} {reason}" for reason, n in sorted(counter.items()))
    return f"{total} ({parts})"
