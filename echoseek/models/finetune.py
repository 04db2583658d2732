"""The fine-tune model: a pretrained backbone with a new embedding head, partly frozen."""

from __future__ import annotations

from echoseek.models.head import EmbeddingHead, EmbeddingModel

TRAINABLE = ("head", "last_stage", "all")


class FineTuneModel(EmbeddingModel):
    """An :class:`EmbeddingModel` whose frozen backbone part stays in eval mode.

    ``trainable``: ``head`` (backbone frozen), ``last_stage`` (layer4 trains too) or ``all``.
    ``train()`` puts the trained parts in training mode but keeps the frozen layers in eval
    mode, so their BatchNorm uses, and keeps, the pretrained statistics. The state dict is
    exactly the EmbeddingModel's.
    """

    def __init__(self, base: EmbeddingModel, head: EmbeddingHead, trainable: str) -> None:
        if trainable not in TRAINABLE:
            raise ValueError(f"trainable: must be one of {list(TRAINABLE)}, got {trainable!r}")
        super().__init__(base.backbone, head)
        self.trainable = trainable
        for p in self.backbone.parameters():
            p.requires_grad = trainable == "all"
        if trainable == "last_stage":
            for p in self.backbone.layer4.parameters():
                p.requires_grad = True

    def train(self, mode: bool = True) -> FineTuneModel:
        super().train(mode)
        if self.trainable != "all":
            self.backbone.eval()
        if mode and self.trainable == "last_stage":
            self.backbone.layer4.train()
        return self


def build_finetune_model(
    pretrained: EmbeddingModel, *, dim: int, hidden: int | None, trainable: str
) -> FineTuneModel:
    """The pretrained backbone with a fresh ``dim``-d head, frozen as ``trainable`` says."""
    head = EmbeddingHead(pretrained.backbone.feature_dim, dim, hidden)
    return FineTuneModel(pretrained, head, trainable)
