"""Search spaces as data (`search_spaces/*.yaml`), validated completely before any cluster work.

`space.py`: the validated `SearchSpace` and `parse_space`; `parts.py`: limits, axes, variants, resources,
scheduler; `yaml_io.py`: bounded YAML; `files.py`: finding and loading space files, `--set` overrides.
The public names are re-exported here: `from drift_sweeps.spaces import load_space`.
"""

from .files import find_space, list_spaces, load_space, parse_overrides, spaces_dir
from .parts import (DISTRIBUTIONS, MAX_FILE_BYTES, MAX_NAME_LEN, MAX_SET_BYTES, MAX_TRIALS, METRICS, MODES,
                    REPLICATE_KEYS, SEARCHES, SMOKE_CAPS, VARIANT_PARAM, Axis, SpaceError, Variant, check_gpus,
                    check_name, jsonable)
from .space import SearchSpace, check_trial_count, parse_space
from .yaml_io import load_yaml

__all__ = ["DISTRIBUTIONS", "MAX_FILE_BYTES", "MAX_NAME_LEN", "MAX_SET_BYTES", "MAX_TRIALS", "METRICS", "MODES",
           "REPLICATE_KEYS", "SEARCHES", "SMOKE_CAPS", "VARIANT_PARAM", "Axis", "SearchSpace", "SpaceError",
           "Variant", "check_gpus", "check_name", "check_trial_count", "find_space", "jsonable", "list_spaces",
           "load_space", "load_yaml", "parse_overrides", "parse_space", "spaces_dir"]
