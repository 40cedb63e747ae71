"""Methods, one file each; importing this package registers them."""

from lesseg.methods.base import METHODS, Method, get_method, register_method
from lesseg.methods.cam import CAMMethod
from lesseg.methods.mcis import MCISMethod
from lesseg.methods.picie import PiCIEMethod
from lesseg.methods.puzzlecam import PuzzleCAMMethod

__all__ = [
    "METHODS",
    "CAMMethod",
    "MCISMethod",
    "Method",
    "PiCIEMethod",
    "PuzzleCAMMethod",
    "get_method",
    "register_method",
]
