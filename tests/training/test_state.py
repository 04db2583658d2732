"""Training checkpoints: exact round trip, plain keys, weights_only loading, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from echoseek.errors import InputError
from echoseek.training import load_state, param_groups, save_state


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())
        self.predictor = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.body(x))


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the model is its only child, ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(x)
        return out


Parts = tuple[
    nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, torch.amp.GradScaler
]


def parts(seed: int) -> Parts:
    torch.manual_seed(seed)
    model = Net()
    groups = param_groups(model, fixed_lr_prefixes=("predictor",), weight_decay=1e-4)
    optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5**s)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    return model, optimizer, scheduler, scaler


def train_a_little(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
) -> None:
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        optimizer.zero_grad()
        scaler.scale(model(x).square().mean()).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Parts]:
    trained = parts(seed=0)
    train_a_little(*trained)
    model, optimizer, scheduler, scaler = trained
    directory = save_state(
        tmp_path / "ckpt",
        model=Wrapper(model),
        optimizer=optimizer,
        epoch=7,
        scheduler=scheduler,
        scaler=scaler,
        metrics={"val_map": 0.5},
        extra={"global_step": 21},
    )
    return directory, trained


def assert_same_tensors(a: object, b: object) -> None:
    """Recursive equality of nested state dicts with tensors."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            assert_same_tensors(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tensors(x, y)
    else:
        assert a == b


def test_round_trip_restores_everything(saved: tuple[Path, Parts]) -> None:
    directory, (model, optimizer, scheduler, scaler) = saved
    fresh_model, fresh_opt, fresh_sched, fresh_scaler = parts(seed=1)
    info = load_state(
        directory,
        model=Wrapper(fresh_model),
        optimizer=fresh_opt,
        scheduler=fresh_sched,
        scaler=fresh_scaler,
    )
    assert info == {"epoch": 7, "metrics": {"val_map": 0.5}, "extra": {"global_step": 21}}
    assert_same_tensors(fresh_model.state_dict(), model.state_dict())  # incl. BN buffers
    assert_same_tensors(fresh_opt.state_dict(), optimizer.state_dict())  # momentum buffers
    assert len(fresh_opt.state_dict()["state"]) == 6  # one per parameter
    assert [g["fixed_lr"] for g in fresh_opt.param_groups] == [False, True]
    assert fresh_sched.state_dict() == scheduler.state_dict()
    assert fresh_scaler.state_dict() == scaler.state_dict()
    assert fresh_scaler.get_scale() != 1024.0  # it grew during training: really restored


def test_state_file_is_plain(saved: tuple[Path, Parts]) -> None:
    directory, (model, *_) = saved
    state = torch.load(directory / "state.pt", weights_only=True)
    assert set(state) == {"format_version", "model", "optimizer", "scheduler", "scaler"}
    assert list(state["model"]) == list(model.state_dict())  # no "module." prefix
    info = json.loads((directory / "state.json").read_text())
    assert info["epoch"] == 7 and info["metrics"] == {"val_map": 0.5}
    assert sorted(p.name for p in directory.iterdir()) == ["state.json", "state.pt"]


def test_plain_model_loads_into_wrapped_and_back(tmp_path: Path) -> None:
    model, optimizer, *_ = parts(seed=0)
    save_state(tmp_path / "a", model=model, optimizer=optimizer, epoch=1)
    other, *_ = parts(seed=1)
    assert load_state(tmp_path / "a", model=Wrapper(other))["epoch"] == 1
    assert_same_tensors(other.state_dict(), model.state_dict())


def test_saving_again_replaces_the_checkpoint(saved: tuple[Path, Parts]) -> None:
    directory, (model, optimizer, *_) = saved
    save_state(directory, model=model, optimizer=optimizer, epoch=8)
    assert load_state(directory, model=parts(seed=2)[0])["epoch"] == 8


def test_unserialisable_state_is_refused_before_writing(tmp_path: Path) -> None:
    model, optimizer, *_ = parts(seed=0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _Callable())
    with pytest.raises(TypeError, match="weights_only"):
        save_state(tmp_path / "c", model=model, optimizer=optimizer, epoch=0, scheduler=scheduler)
    with pytest.raises(TypeError, match="JSON"):
        save_state(tmp_path / "c", model=model, optimizer=optimizer, epoch=0, extra={"x": object()})
    assert not (tmp_path / "c").exists()


class _Callable:
    """LambdaLR pickles the __dict__ of callable objects: not loadable with weights_only."""

    def __init__(self) -> None:
        self.gen = torch.Generator()

    def __call__(self, step: int) -> float:
        return 1.0


def test_missing_files_name_the_file(saved: tuple[Path, Parts], tmp_path: Path) -> None:
    directory, _ = saved
    with pytest.raises(InputError, match="not a training checkpoint"):
        load_state(tmp_path / "nowhere", model=Net())
    (directory / "state.pt").unlink()
    with pytest.raises(InputError, match=r"state\.pt: not found"):
        load_state(directory, model=Net())


def test_corrupt_files_name_the_file(saved: tuple[Path, Parts]) -> None:
    directory, _ = saved
    pt = directory / "state.pt"
    pt.write_bytes(pt.read_bytes()[:100])
    with pytest.raises(InputError, match=r"state\.pt: not a loadable checkpoint"):
        load_state(directory, model=Net())
    (directory / "state.json").write_text("{not json")
    with pytest.raises(InputError, match=r"state\.json: corrupt"):
        load_state(directory, model=Net())


def test_pickled_objects_are_refused(saved: tuple[Path, Parts]) -> None:
    directory, _ = saved
    torch.save({"format_version": 1, "model": {}, "evil": _Callable()}, directory / "state.pt")
    with pytest.raises(InputError, match=r"state\.pt: not a loadable checkpoint"):
        load_state(directory, model=Net())


def test_mismatches_are_input_errors(saved: tuple[Path, Parts]) -> None:
    directory, _ = saved
    with pytest.raises(InputError, match="model does not match"):
        load_state(directory, model=nn.Linear(3, 4))
    model, optimizer, *_ = parts(seed=0)
    save_state(directory, model=model, optimizer=optimizer, epoch=0)
    with pytest.raises(InputError, match="has no scheduler"):
        load_state(
            directory,
            model=Net(),
            scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
        )
    with pytest.raises(InputError, match="optimizer does not match"):
        load_state(directory, model=Net(), optimizer=torch.optim.SGD(Net().parameters(), lr=1.0))
