"""Writes a 2-rank sharded torch.distributed.checkpoint (gloo, DTensor Shard(0)) for the tests."""
import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch import nn


def run(rank, world, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = sys.argv[2]
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    sd = {k: distribute_tensor(v, mesh, [Shard(0)]) for k, v in m.state_dict().items()}
    dcp.save({"model": sd}, checkpoint_id=out)
    if rank == 0:
        torch.save(m.state_dict(), out + ".ref.pt")
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(run, args=(2, sys.argv[1]), nprocs=2)
