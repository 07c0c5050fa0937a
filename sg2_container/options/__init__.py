"""Options: the schema machinery (`schema`) and the training options with their presets
(`training`, whose names are exported here because nearly every room uses them)."""
from sg2_container.options.training import (  # noqa: F401
    AUG_MODES,
    AUGPIPE_NAMES,
    CFG_NAMES,
    FILTER_AUGPIPES,
    METRIC_NAMES,
    NO_RESUME,
    PRESETS,
    PUBLISHED_RESUME,
    Preset,
    TrainingOptions,
    TrainingPlan,
    make_plan,
    network_kwargs,
    resolve_preset,
)
