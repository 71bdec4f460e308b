"""ResNet-18 for 2-D or 3-D patches, written with ``torch.nn`` only.

Architecture: the 18-layer residual network of He et al. 2016 ("Deep residual learning for
image recognition", CVPR, Table 1): a stem, four stages of two *BasicBlocks* ([2, 2, 2, 2])
of widths ``w, 2w, 4w, 8w``, global average pooling and a fully-connected head. A BasicBlock
is two 3x3 convolutions with batch normalisation (BN) and ReLU, plus a shortcut that is the
identity, or a strided 1x1 convolution + BN where the shape changes (He et al. 2016, option B).
Layer details (BN after every convolution, ReLU after the addition, no bias in convolutions,
Kaiming-normal ``fan_out`` initialisation) follow torchvision's reference implementation
(``torchvision.models.resnet``), so that the 2-D network with 3 input channels, width 64 and
a 1000-class head has exactly torchvision's 11,689,512 parameters. torchvision itself is not
used: installing it replaces the pinned torch (``NOTES-toolchain.md``).

Stems (parameter ``stem``):

* ``"strided"``: 7x7 convolution, stride 2, then 3x3 max-pool, stride 2 (He et al. 2016,
  ImageNet). It divides the patch side by 4 before the first stage: about 7x faster to
  train on 32x32 2-D and 16^3 3-D patches (``NOTES-toolchain.md``, ``bench/bench_resnet.py``).
* ``"small"``: one 3x3 convolution, stride 1, no max-pool: the usual adaptation of
  ResNet-18 to small images (as for CIFAR-10 in He et al. 2016, section 4.2), which keeps
  the full resolution of a small patch through the first stage.

Output: a vector of ``n_outputs`` numbers per patch. The calibration uses it as a
regression head: 1 output = the calibrated T1 at the patch centre, or one output per patch
voxel (see :class:`qt1lib.calibrate.config.CalibrationConfig`, ``target``). The seed
(Saunders et al. 2025) states only "patch-based ResNet-18"; the head is our assumption.

Linear input skip (parameter ``input_skip``): global average pooling leaves the head one
feature vector per patch, so a voxel's output cannot depend on that voxel's own input value
except through the blurred features. A voxel-wise regression needs that dependence: the
global linear calibration ``a * T1 + b`` is exactly such a map, and it shrinks noisy voxels
towards the mean. With ``input_skip`` the head adds a learned linear function of the input
channels *at the output voxel* (at the patch centre for one output, at each voxel for one
output per voxel), a 1x1 convolution from the input to the output in the spirit of the
identity shortcuts of He et al. 2016. The network then contains the linear calibration as
a special case (zero ResNet head), and the ResNet learns the spatially varying rest.
"""

from __future__ import annotations

import torch
from torch import nn

from ..validate import require_integer

__all__ = ["BasicBlock", "ResNet18", "STAGE_BLOCKS", "STEMS"]

#: BasicBlocks per stage of ResNet-18 (He et al. 2016, Table 1).
STAGE_BLOCKS: tuple[int, int, int, int] = (2, 2, 2, 2)
#: Stem choices (see the module docstring).
STEMS: tuple[str, ...] = ("strided", "small")

_LAYERS = {
    2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
    3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d),
}


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in _LAYERS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual shortcut (He et al. 2016, Fig. 2).

    Parameters
    ----------
    spatial_dims : int
        2 (``Conv2d``) or 3 (``Conv3d``).
    in_channels, out_channels : int
        Feature channels in and out.
    stride : int
        Stride of the first convolution (2 halves the spatial size at a stage's start).
    """

    expansion = 1

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        _check_dims(spatial_dims)
        conv, norm, _, _ = _LAYERS[spatial_dims]
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                conv(in_channels, out_channels, 1, stride=stride, bias=False), norm(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 (BasicBlock [2, 2, 2, 2]) for 2-D or 3-D inputs.

    Parameters
    ----------
    spatial_dims : int
        2 for images ``(B, C, H, W)``, 3 for volumes ``(B, C, D, H, W)``.
    in_channels : int
        Input channels (e.g. 1 for the MAP T1 alone, 3 with the B1 map and the posterior std).
    n_outputs : int
        Size of the linear head's output (1 for the patch-centre regression).
    width : int
        Channels of the first stage; stages have ``width * (1, 2, 4, 8)``. Default 64
        (He et al. 2016).
    stem : {"strided", "small"}
        See the module docstring. Default ``"strided"`` (He et al. 2016).
    input_skip : bool
        Add the linear input skip of the module docstring. With ``n_outputs == 1`` it reads
        the patch-centre voxel (index ``s // 2`` on each axis of size ``s``); otherwise
        ``n_outputs`` must equal the number of patch voxels (C-ordered). Default False.

    Raises
    ------
    ValueError
        For an unknown ``spatial_dims`` or ``stem``, or a non-positive size; in ``forward``,
        for an input whose voxel count does not match ``n_outputs`` with ``input_skip``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        n_outputs: int,
        width: int = 64,
        stem: str = "strided",
        input_skip: bool = False,
    ):
        super().__init__()
        _check_dims(spatial_dims)
        for name, value in (("in_channels", in_channels), ("n_outputs", n_outputs), ("width", width)):
            require_integer(name, value, 1, builtin=True)
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        if not isinstance(input_skip, bool):
            raise ValueError(f"input_skip must be True or False, got {input_skip!r}")
        conv, norm, maxpool, avgpool = _LAYERS[spatial_dims]
        self.spatial_dims = spatial_dims
        if stem == "strided":
            self.stem = nn.Sequential(
                conv(in_channels, width, 7, stride=2, padding=3, bias=False),
                norm(width),
                nn.ReLU(inplace=True),
                maxpool(kernel_size=3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(
                conv(in_channels, width, 3, stride=1, padding=1, bias=False),
                norm(width),
                nn.ReLU(inplace=True),
            )
        stages = []
        channels = width
        for index, n_blocks in enumerate(STAGE_BLOCKS):
            out_channels = width * 2**index
            blocks = []
            for b in range(n_blocks):
                stride = 2 if (index > 0 and b == 0) else 1
                blocks.append(BasicBlock(spatial_dims, channels, out_channels, stride))
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = avgpool(1)
        self.head = nn.Linear(channels, n_outputs)
        self.n_outputs = n_outputs
        # Weights of the linear input skip, one per input channel; zero at the start, so the
        # initial network is the plain ResNet-18 (the head's bias is the skip's intercept).
        self.input_skip = nn.Parameter(torch.zeros(in_channels)) if input_skip else None
        for m in self.modules():
            if isinstance(m, conv):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, norm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, *spatial)`` to ``(B, n_outputs)``."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"x must have shape (batch, channels, {self.spatial_dims} spatial dims), got {tuple(x.shape)}"
            )
        out = self.head(torch.flatten(self.pool(self.stages(self.stem(x))), 1))
        if self.input_skip is None:
            return out
        if self.n_outputs == 1:
            centre = x[(slice(None), slice(None)) + tuple(s // 2 for s in x.shape[2:])]
            return out + centre @ self.input_skip[:, None]
        skip = torch.einsum("bc...,c->b...", x, self.input_skip).flatten(1)
        if skip.shape[1] != self.n_outputs:
            raise ValueError(
                f"input_skip needs one output per patch voxel: {skip.shape[1]} voxels, {self.n_outputs} outputs"
            )
        return out + skip
