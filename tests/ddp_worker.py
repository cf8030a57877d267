"""Run under `torchrun`: trains from a JSON TrainConfig, then each rank saves its weights."""
from __future__ import annotations

import json
import sys

import torch


def main() -> None:
    from scam_train.config import TrainConfig
    from scam_train.trainer import Trainer
    cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
    trainer = Trainer(cfg)
    trainer.fit()
    state = {**{f"ae.{k}": v for k, v in trainer.ae.state_dict().items()},
             **{f"disc.{k}": v for k, v in trainer.disc.state_dict().items()}}
    torch.save(state, f"{cfg.out}/rank{trainer.rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
