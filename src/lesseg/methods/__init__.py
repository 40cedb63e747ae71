"""Methods, one file (or package) each; importing this package registers lesseg's own in
:mod:`lesseg.registry`. A method of one's own registers the same way (``@register_method("name",
config=...)``) and needs nothing else to train, evaluate, predict and report."""

from lesseg.methods.base import REGIMES, Method
from lesseg.methods.cam import CAMMethod
from lesseg.methods.mcis import MCISConfig, MCISMethod
from lesseg.methods.picie import PiCIEConfig, PiCIEMethod
from lesseg.methods.pseudoseg import PseudoSegConfig, PseudoSegMethod
from lesseg.methods.puzzlecam import PuzzleCAMConfig, PuzzleCAMMethod
from lesseg.methods.simformer import SimFormerConfig, SimFormerMethod
from lesseg.methods.supervised import SupervisedMethod
from lesseg.registry import get_method, register_method, registered_methods

__all__ = [
    "REGIMES", "CAMMethod", "MCISConfig", "MCISMethod", "Method", "PiCIEConfig", "PiCIEMethod", "PseudoSegConfig", "PseudoSegMethod",
    "PuzzleCAMConfig", "PuzzleCAMMethod", "SimFormerConfig", "SimFormerMethod", "SupervisedMethod", "get_method", "register_method", "registered_methods",
]  # fmt: skip
