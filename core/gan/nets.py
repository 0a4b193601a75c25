"""Generators and discriminator of the single-date (Pix2Pix) and multi-temporal (MTcGAN) models.

- `UNetGenerator`: Pix2Pix U-Net (Isola et al. 2017) with skip connections; its depth adapts to
  the patch size (log2(patch) downsamplings, 8 for 256 px, at most 8), dropout 0.5 in the three
  innermost decoder blocks, tanh output.
- `ResnetGenerator`: He & Yokoya 2018 (Fig. 2): n64k7, n128k3, n256k3 at stride 1 (no pooling),
  9 residual blocks, three layers back down to the output bands, tanh output. The blocks and the
  padding are those of the reference ResNet generator of their [12] (pix2pix / CycleGAN code):
  Conv-BN-ReLU-Drop(0.5)-Conv-BN with reflection padding. The paper's text says
  Conv-BN-ReLU-Drop-Conv-ReLU and zero padding: a documented departure.
- `PatchDiscriminator`: the 70x70 PatchGAN (C64-C128-C256-C512, then a 1-channel map) on the
  concatenated input and output.

torch is imported by whoever imports this module (core/gan is only imported lazily).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def unet_depth(patch: int, max_depth: int = 8) -> int:
    """Downsamplings of the U-Net for a patch size: down to 1 px, at most `max_depth`."""
    if patch < 4:
        raise ValueError(f"patch {patch} is too small for a U-Net (>= 4 px)")
    return max(2, min(max_depth, int(math.log2(patch))))


class _UNetBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up, concatenated with its input."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None, in_ch: int | None = None,
                 outermost: bool = False, innermost: bool = False, dropout: float = 0.0):
        super().__init__()
        self.outermost = outermost
        in_ch = outer if in_ch is None else in_ch
        down = [nn.Conv2d(in_ch, inner, 4, 2, 1, bias=False)]
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
            layers = down + [sub] + up
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True)] + down + [
                nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True)] + down + [nn.BatchNorm2d(inner), sub, nn.ReLU(True),
                                                         nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False),
                                                         nn.BatchNorm2d(outer)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UNetGenerator(nn.Module):
    """Pix2Pix U-Net: (N, in_ch, H, W) -> (N, out_ch, H, W) in [-1, 1]; H, W multiples of 2**depth."""

    def __init__(self, in_ch: int, out_ch: int, ngf: int = 64, depth: int = 8, dropout: float = 0.5):
        super().__init__()
        if depth < 2:
            raise ValueError("U-Net depth must be >= 2")
        self.depth = depth
        widths = [ngf * min(2 ** i, 8) for i in range(depth)]  # inner width of each level: 64, 128, ...
        block = _UNetBlock(widths[-2], widths[-1], None, innermost=True)
        for i in range(depth - 2, 0, -1):  # from the inside out; dropout where 8*ngf meets 8*ngf
            drop = dropout if widths[i - 1] == widths[i] == ngf * 8 else 0.0
            block = _UNetBlock(widths[i - 1], widths[i], block, dropout=drop)
        self.model = _UNetBlock(out_ch, widths[0], block, in_ch=in_ch, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _ResBlock(nn.Module):
    def __init__(self, ch: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True),
            nn.Dropout(dropout), nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=False), nn.BatchNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """He & Yokoya's generator: stride-1 encoder to 4*ngf features, residual blocks, tanh output."""

    def __init__(self, in_ch: int, out_ch: int, ngf: int = 64, n_blocks: int = 9, dropout: float = 0.5):
        super().__init__()

        def cbr(i: int, o: int, k: int) -> list[nn.Module]:
            return [nn.ReflectionPad2d(k // 2), nn.Conv2d(i, o, k, bias=False), nn.BatchNorm2d(o), nn.ReLU(True)]

        layers = cbr(in_ch, ngf, 7) + cbr(ngf, ngf * 2, 3) + cbr(ngf * 2, ngf * 4, 3)
        layers += [_ResBlock(ngf * 4, dropout) for _ in range(n_blocks)]
        layers += cbr(ngf * 4, ngf * 2, 3) + cbr(ngf * 2, ngf, 3)
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (n_layers=3): logits map, one per overlapping 70 px receptive field."""

    def __init__(self, in_ch: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([x, y], 1))


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Pix2Pix initialisation: conv weights N(0, 0.02), batch-norm weights N(1, 0.02)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def build_generator(cfg: dict) -> nn.Module:
    """The generator a training config describes (kind, in/out channels, widths, depth)."""
    if cfg["kind"] == "pix2pix":
        return UNetGenerator(cfg["in_ch"], cfg["out_ch"], cfg["ngf"], cfg["depth"], cfg.get("dropout", 0.5))
    return ResnetGenerator(cfg["in_ch"], cfg["out_ch"], cfg["ngf"], cfg["n_blocks"], cfg.get("dropout", 0.5))
