"""grader.yaml: the assignment-level configuration, validated by pydantic.

Why a schema library: instructors edit this file by hand right before a deadline; a typo in a
key must be a precise error ("grader.yaml: limits.check_timeout: Input should be a valid
number"), never a silently ignored setting. ``extra="forbid"`` everywhere for that reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from grader.errors import ConfigError
from grader.yamlio import format_validation_error, read_yaml

Visibility = Literal["hidden", "after_due_date", "after_published", "visible"]
FileKind = Literal["python", "notebook", "model", "other"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectedFile(_Strict):
    """One file students are told to upload (even untouched)."""

    name: str
    kind: FileKind = "python"
    description: str = ""

    @model_validator(mode="after")
    def _plain_name(self) -> "ExpectedFile":
        if "/" in self.name or "\\" in self.name or self.name.startswith("."):
            raise ValueError(f"file name must be a plain file name, got {self.name!r}")
        return self


class Limits(_Strict):
    """Time and resource limits. Times are seconds, sizes megabytes."""

    check_timeout: float = Field(20.0, gt=0, description="default per-call limit of one check")
    total_budget: float = Field(
        540.0, gt=0, description="whole-run deadline; keep it below the platform timeout"
    )
    memory_mb: int = Field(2048, gt=0, description="address-space limit of a worker")
    cpu_seconds: int = Field(600, gt=0)
    max_processes: int = Field(64, gt=0)
    file_size_mb: int = Field(64, gt=0)
    open_files: int = Field(256, gt=0)
    output_chars: int = Field(20000, gt=0, description="student stdout kept per check")


class Feedback(_Strict):
    default_visibility: Visibility = "visible"
    stdout_visibility: Visibility = "hidden"
    show_student_output: bool = True


class AccuracyThresholds(_Strict):
    """Maps a test accuracy (fraction) to points: full at ``full``, linear down to ``floor``."""

    full: float = Field(0.40, ge=0, le=1)
    floor: float = Field(0.20, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> "AccuracyThresholds":
        if self.floor > self.full:
            raise ValueError("floor must not be above full")
        return self


class DataConfig(_Strict):
    """Where the PROPS data lives. ``cache`` wins; otherwise the synthetic stand-in is used."""

    props_cache: Optional[str] = None
    props_source: Optional[str] = None
    allow_synthetic: bool = True
    svm_thresholds: AccuracyThresholds = AccuracyThresholds()
    softmax_thresholds: AccuracyThresholds = AccuracyThresholds()
    knn_thresholds: AccuracyThresholds = AccuracyThresholds(full=0.50, floor=0.25)


class SandboxConfig(_Strict):
    user: Optional[str] = Field(
        None, description="unprivileged user the worker runs as when the grader is root"
    )


class GradescopeConfig(_Strict):
    """Platform settings used by ``run_autograder`` (see grader/gradescope.py)."""

    max_submissions_per_day: Optional[int] = Field(
        None, ge=1, description="graded submissions per student in any 24 h; null = no limit"
    )
    platform_timeout: float = Field(
        600.0, gt=0, description="the autograder timeout set on Gradescope (seconds)"
    )


class AssignmentConfig(_Strict):
    title: str
    files: list[ExpectedFile] = Field(min_length=1)
    specs_dir: str = "test_specs"
    reference_dir: str = "reference"
    template_dir: str = "student_template"
    limits: Limits = Limits()
    feedback: Feedback = Feedback()
    data: DataConfig = DataConfig()
    sandbox: SandboxConfig = SandboxConfig()
    gradescope: GradescopeConfig = GradescopeConfig()
    total_points: Optional[float] = Field(
        None, description="if set, the specs' points must add up to it"
    )

    @model_validator(mode="after")
    def _unique_files(self) -> "AssignmentConfig":
        names = [f.name for f in self.files]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"files listed twice: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _budget_below_platform_timeout(self) -> "AssignmentConfig":
        # the platform discards everything at its timeout: our own deadline must come first
        if self.limits.total_budget >= self.gradescope.platform_timeout:
            raise ValueError(
                f"limits.total_budget ({self.limits.total_budget:g} s) must be below "
                f"gradescope.platform_timeout ({self.gradescope.platform_timeout:g} s)"
            )
        return self


class Assignment:
    """A loaded grader.yaml plus the directory it lives in (relative paths resolve there)."""

    def __init__(self, config: AssignmentConfig, path: Path):
        self.config = config
        self.path = path
        self.root = path.parent

    @property
    def title(self) -> str:
        return self.config.title

    @property
    def specs_dir(self) -> Path:
        return self.root / self.config.specs_dir

    @property
    def reference_dir(self) -> Path:
        return self.root / self.config.reference_dir

    @property
    def template_dir(self) -> Path:
        return self.root / self.config.template_dir

    def expected(self, name: str) -> ExpectedFile | None:
        return next((f for f in self.config.files if f.name == name), None)

    def resolve(self, relative: str) -> Path:
        p = Path(os.path.expandvars(relative)).expanduser()
        return p if p.is_absolute() else self.root / p


def load_config(path: Path | str) -> Assignment:
    """Load and validate grader.yaml; raise ConfigError naming file and key on any problem."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (pass --config or set GRADER_CONFIG)")
    raw = read_yaml(path, ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping of keys, got {type(raw).__name__}")
    try:
        config = AssignmentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    return Assignment(config, path)


def default_config_path() -> Path:
    """grader.yaml to use when none is given: $GRADER_CONFIG, ./grader.yaml, the repo's own."""
    env = os.environ.get("GRADER_CONFIG")
    if env:
        return Path(env)
    here = Path.cwd() / "grader.yaml"
    if here.is_file():
        return here
    return Path(__file__).resolve().parent.parent / "grader.yaml"
