"""An /invocations body and Accept header -> a validated RenderRequest, or a RequestError that
names the field and what is allowed (sent back as JSON with a 4xx status)."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from sg2_container.errors import UserError, shortened
from sg2_container.inference.options import (TRUNCATION_PSI_ALLOWED, default_style_layers,
                                              truncation_psi_allowed)
from sg2_container.inference.seeds import MAX_SEED, TooManySeeds, parse_seeds
from sg2_container.options.choices import NOISE_MODES
from sg2_container.options.schema import closest

FIELDS = ("seed", "seeds", "truncation_psi", "class", "noise_mode", "w", "mix")
SOURCES = ("seed", "seeds", "w", "mix")
MIX_FIELDS = ("row_seeds", "col_seeds", "styles")

JSON = "application/json"
PNG = "image/png"
NPY = "application/x-npy"
MEDIA_TYPES = (JSON, PNG, NPY)  # also the order of preference among equals


class RequestError(UserError):
    """A bad request: `field` is the JSON field at fault (None: the body or a header)."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status

    def body(self) -> dict:
        return {"error": str(self), "field": self.field}


@dataclasses.dataclass(frozen=True)
class NetworkInfo:
    """What validation needs to know about the generator."""

    num_ws: int
    w_dim: int
    c_dim: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class RenderRequest:
    """One request's images: from seeds, a projected W, or a style-mixing grid (row-major)."""

    kind: str  # 'seeds', 'w' or 'mix'
    noise_mode: str = "const"
    truncation_psi: float = 1.0
    class_idx: int | None = None
    seeds: tuple[int, ...] = ()
    w: np.ndarray | None = None  # float32 [N, num_ws, w_dim]
    row_seeds: tuple[int, ...] = ()
    col_seeds: tuple[int, ...] = ()
    styles: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        if self.kind == "seeds":
            return len(self.seeds)
        if self.kind == "w":
            return int(self.w.shape[0])
        return len(self.row_seeds) * len(self.col_seeds)

    def labels(self) -> list[dict]:
        """What each image is, in order, for the JSON answer."""
        if self.kind == "seeds":
            return [{"seed": s} for s in self.seeds]
        if self.kind == "w":
            return [{"w_index": i} for i in range(self.count)]
        return [{"row_seed": r, "col_seed": c} for r in self.row_seeds for c in self.col_seeds]


def accepted_media_types(accept: str | None) -> list[str]:
    """The types this endpoint answers with that `accept` allows, best first (RFC 9110): each
    type takes the q-value of the most specific range matching it (type/subtype over type/* over
    */*), q=0 excludes it; ties go to the more specific range, then to the earlier one in the
    header, then JSON before npy before PNG. No header (or an empty one) means */*. 406 when no
    type is left."""
    ranges = []  # (media range, q, position)
    for position, part in enumerate((accept or "*/*").split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if not media:
            continue
        if media == "*":  # Java's HttpURLConnection sends "*; q=.2"
            media = "*/*"
        q = 1.0
        for param in pieces[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not 0 <= q <= 1:  # NaN or out of range: not a q-value, the range is void
                    q = 0.0
        ranges.append((media, q, position))
    ranked = []
    for preference, media_type in enumerate(MEDIA_TYPES):
        best = None  # (specificity, -position, q) of the most specific matching range
        for media, q, position in ranges:
            specificity = _specificity(media, media_type)
            if specificity is not None and (best is None or
                                            (specificity, -position) > best[:2]):
                best = (specificity, -position, q)
        if best is not None and best[2] > 0:
            ranked.append(((-best[2], -best[0], -best[1], preference), media_type))
    if not ranked:
        raise RequestError(f"Accept: {accept!r} names no type this endpoint answers with; "
                           f"allowed: {', '.join(MEDIA_TYPES)} (or */*)", status=406)
    return [media_type for _, media_type in sorted(ranked)]


def _specificity(media_range: str, media_type: str) -> int | None:
    """2: the range is the type itself, 1: its type/*, 0: */*, None: no match."""
    if media_range == media_type:
        return 2
    if media_range == media_type.split("/")[0] + "/*":
        return 1
    return 0 if media_range == "*/*" else None


def choose_media_type(accepted: list[str], count: int) -> str:
    """The best of `accepted` (accepted_media_types) that can hold `count` images: a PNG holds
    one; else the next acceptable type, 406 when none is left."""
    for media_type in accepted:
        if media_type != PNG or count == 1:
            return media_type
    raise RequestError(f"Accept: {PNG} holds one image and this request makes {count}; ask "
                       f"for {JSON} or {NPY}", status=406)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seed_list(value: Any, field: str, max_images: int) -> tuple[int, ...]:
    """A JSON list of seeds, or the CLI's text form ('0-7,12'), bounded before expanding."""
    if isinstance(value, str):
        try:
            seeds = parse_seeds(value, max_seeds=max_images)
        except TooManySeeds:
            raise RequestError(f"{field}={_short(value)} asks for more than {max_images} "
                               f"images (this endpoint's max_images)", field=field) from None
        except UserError as error:
            raise RequestError(f"{field}: {error}", field=field) from None
    elif isinstance(value, list):
        seeds = value
    else:
        raise RequestError(f"{field}={_short(value)} is not allowed: a list of integer seeds or "
                           f"a text such as '0-7,12'", field=field)
    if not seeds:
        raise RequestError(f"{field}: at least one seed is needed", field=field)
    if len(seeds) > max_images:
        raise RequestError(f"{field}: {len(seeds)} seeds is more than {max_images} images (this "
                           f"endpoint's max_images)", field=field)
    for seed in seeds:
        _check_seed(seed, field)
    return tuple(seeds)


def _check_seed(seed: Any, field: str) -> int:
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise RequestError(f"{field}: seed {_short(seed)} is not allowed: integers from 0 to "
                           f"{MAX_SEED}", field=field)
    return seed


def _short(value: Any) -> str:
    """A request's value as JSON (as the client sent it), shortened for the message."""
    return shortened(json.dumps(value) if not isinstance(value, np.ndarray) else repr(value))


def parse_request(body: bytes, network: NetworkInfo, max_images: int,
                  content_type: str | None = None) -> RenderRequest:
    """Validates every field; the first problem found is raised as a RequestError.

    A JSON body is taken whatever `content_type` says (curl -d sends a form type, SageMaker's
    invoke_endpoint passes on any ContentType); the header only chooses the error for a body
    that is not JSON: 415 naming it when it is not a JSON type, else 400."""
    try:
        return _parse(body, network, max_images, content_type)
    except RecursionError:  # JSON nested thousands deep: the client's to fix
        raise RequestError("the body is nested too deeply; send an object such as "
                           '{"seed": 42}') from None


def max_values(network: NetworkInfo, max_images: int) -> int:
    """The most numbers a valid body can hold: max_images W's (plus room for the other
    fields). Seeds and mixes need far fewer."""
    return max_images * network.num_ws * network.w_dim + 1000


def is_json_type(content_type: str | None) -> bool:
    """No Content-Type, application/json, text/json or a +json type (parameters aside)."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media in ("", JSON, "text/json") or media.endswith("+json")


def _parse(body: bytes, network: NetworkInfo, max_images: int,
           content_type: str | None) -> RenderRequest:
    # Counted at C speed before json.loads (which holds the GIL for its whole run): a 6 MB
    # body of 3,000,000 seeds is refused in milliseconds, not parsed for half a second.
    limit = max_values(network, max_images)
    if body.count(b",") > limit:
        raise RequestError(f"the body holds more than {limit} values, more than any request "
                           f"of at most {max_images} images (this endpoint's max_images) needs")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        if not is_json_type(content_type):
            raise RequestError(f"Content-Type {_short(content_type)} and the body is not JSON: "
                               f"this endpoint takes a JSON body ({JSON}; the header itself is "
                               'not required), such as {"seed": 42}', status=415) from None
        raise RequestError(f"the body is not JSON ({error}); send an object such as "
                           '{"seed": 42}') from None
    except ValueError:  # an integer of more than 4300 digits (Python's conversion limit)
        raise RequestError("the body holds a number of thousands of digits; seeds go from 0 to "
                           f"{MAX_SEED} and the other numbers are small") from None
    if not isinstance(data, dict):
        raise RequestError(f"the body is a JSON {type(data).__name__}, not an object such as "
                           '{"seed": 42}')
    for key in data:
        if key not in FIELDS:
            raise RequestError(f"unknown field {key!r}{closest(key, FIELDS)}; allowed: "
                               f"{', '.join(FIELDS)}", field=key)
    data = _without_nulls(data)
    given = [k for k in SOURCES if data.get(k) is not None]
    if len(given) != 1:
        what = "none" if not given else ", ".join(given)
        raise RequestError(f"give exactly one of {', '.join(SOURCES)} (got {what})",
                           field=given[-1] if given else None)
    source = given[0]

    noise_mode = data.get("noise_mode", "const")
    if noise_mode not in NOISE_MODES:
        raise RequestError(f"noise_mode={_short(noise_mode)} is not allowed: one of "
                           f"{', '.join(NOISE_MODES)}", field="noise_mode")

    if source == "w":
        for key in ("truncation_psi", "class"):
            if data.get(key) is not None:
                raise RequestError(f"{key} applies to seeds and mix; a projected w is rendered "
                                   f"as given: leave {key} out", field=key)
        return RenderRequest(kind="w", noise_mode=noise_mode,
                             w=_parse_w(data["w"], network, max_images))

    psi = data.get("truncation_psi", 1.0)
    if not truncation_psi_allowed(psi):
        raise RequestError(f"truncation_psi={_short(psi)} is not allowed: "
                           f"{TRUNCATION_PSI_ALLOWED}", field="truncation_psi")
    class_idx = data.get("class")
    if network.c_dim == 0:
        if class_idx is not None:
            raise RequestError(f"class={_short(class_idx)}: the network is unconditional; leave "
                               "class out", field="class")
    elif class_idx is None:
        raise RequestError(f"class is required: the network is conditional, give an integer "
                           f"from 0 to {network.c_dim - 1}", field="class")
    elif not _is_int(class_idx) or not 0 <= class_idx < network.c_dim:
        raise RequestError(f"class={_short(class_idx)} is not allowed: the network is "
                           f"conditional, give an integer from 0 to {network.c_dim - 1}",
                           field="class")
    common = dict(noise_mode=noise_mode, truncation_psi=float(psi), class_idx=class_idx)

    if source == "seed":
        return RenderRequest(kind="seeds", seeds=(_check_seed(data["seed"], "seed"),), **common)
    if source == "seeds":
        return RenderRequest(kind="seeds", seeds=_seed_list(data["seeds"], "seeds", max_images),
                             **common)
    return _parse_mix(data["mix"], network, max_images, common)


def _without_nulls(fields: dict) -> dict:
    """JSON null means "absent" for every field (clients serialise unset options as null), so
    each default applies; a misspelled field is refused before this, null or not."""
    return {key: value for key, value in fields.items() if value is not None}


def _parse_mix(mix: Any, network: NetworkInfo, max_images: int, common: dict) -> RenderRequest:
    if not isinstance(mix, dict):
        raise RequestError('mix must be an object such as {"row_seeds": [1, 2], "col_seeds": '
                           '[3, 4], "styles": [0, 1, 2, 3]}', field="mix")
    for key in mix:
        if key not in MIX_FIELDS:
            raise RequestError(f"unknown field mix.{key}{closest(key, MIX_FIELDS)}; allowed: "
                               f"{', '.join(MIX_FIELDS)}", field=f"mix.{key}")
    mix = _without_nulls(mix)
    for key in ("row_seeds", "col_seeds"):
        if mix.get(key) is None:
            raise RequestError(f"mix.{key} is required: a list of seeds", field=f"mix.{key}")
    rows = _seed_list(mix["row_seeds"], "mix.row_seeds", max_images)
    cols = _seed_list(mix["col_seeds"], "mix.col_seeds", max_images)
    if len(rows) * len(cols) > max_images:
        raise RequestError(f"mix: {len(rows)} x {len(cols)} = {len(rows) * len(cols)} images is "
                           f"more than {max_images} (this endpoint's max_images)",
                           field="mix")
    styles = mix.get("styles")
    if styles is None:
        styles = default_style_layers(network.num_ws)
    allowed = f"layer indices from 0 to {network.num_ws - 1} (a list, or a text such as '0-6')"
    if isinstance(styles, str):
        try:
            styles = parse_seeds(styles) if len(styles) <= 64 else None
        except UserError:
            styles = None
    if (not isinstance(styles, list) or not styles or len(styles) > network.num_ws * 4
            or not all(_is_int(s) and 0 <= s < network.num_ws for s in styles)):
        raise RequestError(f"mix.styles={_short(mix.get('styles'))} is not allowed: {allowed}",
                           field="mix.styles")
    return RenderRequest(kind="mix", row_seeds=rows, col_seeds=cols, styles=tuple(styles),
                         **common)


def _parse_w(value: Any, network: NetworkInfo, max_images: int) -> np.ndarray:
    shape = f"[{network.num_ws}, {network.w_dim}] or [N, {network.num_ws}, {network.w_dim}]"
    try:
        w = np.asarray(value)  # no dtype: text and booleans must not pass as numbers
    except (TypeError, ValueError, OverflowError, RecursionError):  # e.g. ragged lists
        raise RequestError(f"w is not a nested list of numbers of shape {shape}",
                           field="w") from None
    if w.dtype.kind not in "iuf":  # text, booleans, a 400-digit number (an object array)
        raise RequestError(f"w is not a nested list of numbers of shape {shape}", field="w")
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3 or w.shape[1:] != (network.num_ws, network.w_dim):
        raise RequestError(f"w has shape {list(w.shape)}; allowed: {shape}", field="w")
    if not 1 <= w.shape[0] <= max_images:
        raise RequestError(f"w holds {w.shape[0]} latents; allowed: 1 to {max_images} (this "
                           f"endpoint's max_images)", field="w")
    with np.errstate(over="ignore"):  # beyond float32's range: infinite, refused below
        w = w.astype(np.float32)
    if not np.isfinite(w).all():
        raise RequestError("w holds NaN, infinite or out-of-range values; allowed: finite "
                           "numbers within float32's range (about 3.4e38)", field="w")
    return w

