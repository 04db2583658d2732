"""The typed config sections every training job has: how it scales and where its run lives."""

from __future__ import annotations

from dataclasses import dataclass, field

from echoseek.errors import ConfigError


@dataclass
class ScaleOptions:
    """How the job scales: Ray Train workers and what each one uses."""

    num_workers: int = 2
    use_gpu: bool | None = None  # None: GPUs when the cluster has them
    cpus_per_worker: float = 0.5  # fractional on a laptop so Ray Data tasks still schedule
    data_cpus: float = 0.5  # CPUs per Ray Data decode/augment task
    data_tasks: int = 0  # most decode/augment tasks at once; 0: see data_task_limit
    sync_bn: bool = False  # convert BatchNorm to SyncBatchNorm across workers
    amp: bool = True  # bf16 where supported, else fp16 + GradScaler; always off on CPU
    compile: bool = False  # torch.compile the model
    channels_last: bool = True  # on GPU only
    torch_threads: int = 0  # intra-op threads per worker; 0: node CPUs / workers on the node
    resources: dict[str, float] = field(default_factory=dict)  # more per worker, e.g. a node type

    def __post_init__(self) -> None:
        if any(name in ("CPU", "GPU") or amount <= 0 for name, amount in self.resources.items()):
            raise ConfigError(
                f"scale.resources: custom resources with positive amounts only (CPU and GPU "
                f"have their own keys), got {self.resources}"
            )
        if self.num_workers < 1:
            raise ConfigError(f"scale.num_workers: must be >= 1, got {self.num_workers}")
        if self.cpus_per_worker <= 0 or self.data_cpus <= 0:
            raise ConfigError("scale.cpus_per_worker and scale.data_cpus must be positive")
        if self.data_tasks < 0:
            raise ConfigError(f"scale.data_tasks: must be >= 0, got {self.data_tasks}")


@dataclass
class RunOptions:
    """Where the run lives, what is kept, how failures are handled, where it is tracked."""

    name: str = ""  # Ray Train run name; re-running the same name resumes it
    storage_path: str = "work/ray_results"  # local dir or a pyarrow/fsspec URI (s3://...)
    keep: int = 2  # checkpoints kept (the best by the job's score)
    max_failures: int = 1  # worker crashes restarted from the last checkpoint
    tracking_uri: str = ""  # MLflow; default $MLFLOW_TRACKING_URI or the local mlflow/ store
    experiment: str = "echoseek"
    register: str = ""  # register the final model under this name

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ConfigError(f"run.keep: must be >= 1, got {self.keep}")
        if self.max_failures < 0:
            raise ConfigError(f"run.max_failures: must be >= 0, got {self.max_failures}")
