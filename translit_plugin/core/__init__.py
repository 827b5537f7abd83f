"""The bottom layer: names every other layer shares, file hashing, atomic writes, safe output paths and the line
contract.  Standard library only; nothing here imports torch, fairseq or another part of the package."""
