"""Optuna's study for a sweep: held in memory, mirrored to SQLite in the sweep folder for optuna-dashboard.

The searcher only ever reads and writes the in-memory study, so a disk that fills up or turns read-only
under `optuna.db` cannot fail a `suggest` or a `tell` (and with them Tune's `fit`).  The SQLite file is a
live view: each write of the study is repeated there; the first one that fails warns once and the mirror
stops for the rest of the sweep.  A study already in the file (a resumed sweep) is loaded into memory first.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Container, Optional, Sequence

from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, InMemoryStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger("drift_sweeps.tune.live")


def _cause(err: BaseException) -> str:
    """The innermost cause of a failed write, on one line (Optuna wraps SQLite's own error)."""
    while err.__cause__ is not None or (err.__context__ is not None and not err.__suppress_context__):
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    text = " ".join(str(err).split())
    if type(err).__name__ == "OperationalError" and text.startswith("("):  # SQLAlchemy's "(sqlite3...) ..."
        text = text.split(") ", 1)[-1]
    return f"{type(err).__name__}: {text.split(' [SQL:')[0][:200]}"


class MirroredStorage(BaseStorage):
    """An in-memory Optuna storage whose writes are repeated, best effort, in `mirror` (an RDBStorage)."""

    def __init__(self, path: str, open_mirror: Callable[[], BaseStorage]) -> None:
        self._path = path
        self._memory = InMemoryStorage()
        self._mirror: Optional[BaseStorage] = None
        self._studies: dict[int, int] = {}  # memory study id -> mirror study id
        self._trials: dict[int, int] = {}  # memory trial id -> mirror trial id
        try:
            mirror = open_mirror()
            self._load(mirror)
            self._mirror = mirror
        except Exception as err:  # noqa: BLE001 - a live view's failure must not stop the sweep
            self._stop(err)

    @property
    def mirrored(self) -> bool:
        """Whether writes still reach the SQLite file."""
        return self._mirror is not None

    def close(self) -> None:
        """Stop mirroring and close the file (the study stays in memory)."""
        mirror, self._mirror = self._mirror, None
        engine = getattr(mirror, "engine", None)
        if engine is not None:
            engine.dispose()

    def _load(self, mirror: BaseStorage) -> None:
        """The studies already in the file, copied into memory (same numbers, states and values)."""
        for study in mirror.get_all_studies():
            sid = self._memory.create_new_study(study.directions, study.study_name)
            self._studies[sid] = study._study_id
            for key, value in study.user_attrs.items():
                self._memory.set_study_user_attr(sid, key, value)
            for key, value in study.system_attrs.items():
                self._memory.set_study_system_attr(sid, key, value)
            for trial in sorted(mirror.get_all_trials(study._study_id, deepcopy=False), key=lambda t: t.number):
                self._trials[self._memory.create_new_trial(sid, template_trial=trial)] = trial._trial_id

    def _stop(self, err: BaseException) -> None:
        self._mirror = None
        log.warning("Optuna's study file %s: writes stopped (%s); the study goes on in memory",
                    self._path, _cause(err))

    def _repeat(self, action: Callable[[BaseStorage], Any]) -> Any:
        """action(mirror) unless the mirror has stopped; its first failure warns and stops it."""
        if self._mirror is None:
            return None
        try:
            return action(self._mirror)
        except Exception as err:  # noqa: BLE001 - a live view's failure must not stop the sweep
            self._stop(err)
            return None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its searcher with each experiment checkpoint: the study goes with it, the file
        # connection does not (a restored searcher continues in memory)
        state = self.__dict__.copy()
        state["_mirror"] = None
        return state

    # ---- studies ---------------------------------------------------------------------------------------
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: Optional[str] = None) -> int:
        sid = self._memory.create_new_study(directions, study_name)
        name = self._memory.get_study_name_from_id(sid)
        rid = self._repeat(lambda m: m.create_new_study(directions, name))
        if rid is not None:
            self._studies[sid] = rid
        return sid

    def delete_study(self, study_id: int) -> None:
        self._memory.delete_study(study_id)
        rid = self._studies.pop(study_id, None)
        if rid is not None:
            self._repeat(lambda m: m.delete_study(rid))

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._memory.set_study_user_attr(study_id, key, value)
        self._on_study(study_id, lambda m, rid: m.set_study_user_attr(rid, key, value))

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._memory.set_study_system_attr(study_id, key, value)
        self._on_study(study_id, lambda m, rid: m.set_study_system_attr(rid, key, value))

    def _on_study(self, study_id: int, action: Callable[[BaseStorage, int], Any]) -> None:
        rid = self._studies.get(study_id)
        if rid is not None:
            self._repeat(lambda m: action(m, rid))

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._memory.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._memory.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._memory.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._memory.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._memory.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._memory.get_all_studies()

    # ---- trials ----------------------------------------------------------------------------------------
    def create_new_trial(self, study_id: int, template_trial: Optional[FrozenTrial] = None) -> int:
        tid = self._memory.create_new_trial(study_id, template_trial)
        rid = self._studies.get(study_id)
        if rid is not None:
            created = self._memory.get_trial(tid)
            mirrored = self._repeat(lambda m: m.create_new_trial(rid, template_trial=created))
            if mirrored is not None:
                self._trials[tid] = mirrored
        return tid

    def _on_trial(self, trial_id: int, action: Callable[[BaseStorage, int], Any]) -> None:
        rid = self._trials.get(trial_id)
        if rid is not None:
            self._repeat(lambda m: action(m, rid))

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        self._memory.set_trial_param(trial_id, param_name, param_value_internal, distribution)
        self._on_trial(trial_id, lambda m, rid: m.set_trial_param(rid, param_name, param_value_internal,
                                                                  distribution))

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Optional[Sequence[float]] = None) -> bool:
        changed = self._memory.set_trial_state_values(trial_id, state, values)
        if changed:
            self._on_trial(trial_id, lambda m, rid: m.set_trial_state_values(rid, state, values))
        return changed

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._memory.set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._on_trial(trial_id, lambda m, rid: m.set_trial_intermediate_value(rid, step, intermediate_value))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._memory.set_trial_user_attr(trial_id, key, value)
        self._on_trial(trial_id, lambda m, rid: m.set_trial_user_attr(rid, key, value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._memory.set_trial_system_attr(trial_id, key, value)
        self._on_trial(trial_id, lambda m, rid: m.set_trial_system_attr(rid, key, value))

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._memory.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return self._memory.get_trial_number_from_id(trial_id)

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        return self._memory.get_trial_param(trial_id, param_name)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._memory.get_trial(trial_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Optional[Container[TrialState]] = None) -> list[FrozenTrial]:
        return self._memory.get_all_trials(study_id, deepcopy=deepcopy, states=states)

    def get_n_trials(self, study_id: int, state: Any = None) -> int:
        return self._memory.get_n_trials(study_id, state)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._memory.get_best_trial(study_id)

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        return self._memory.get_trial_params(trial_id)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._memory.get_trial_user_attrs(trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._memory.get_trial_system_attrs(trial_id)

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        self._memory.check_trial_is_updatable(trial_id, trial_state)
