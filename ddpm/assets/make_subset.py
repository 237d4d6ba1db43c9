#!/usr/bin/env python3
"""Makes the MNIST subset embedded in the ddpm crate (ddpm/assets/mnist-subset/).

Selection rule: walk the MNIST *training* set in its file order and keep image i when
fewer than PER_CLASS images of its label have been kept so far. The result is the
first PER_CLASS images of each digit, in their original relative order: 10,000 images,
1,000 per class. It is written as standard IDX files (same magic numbers and layout as
the source), gzip-compressed at level 9 with the gzip header's mtime set to 0 and no
file name, so that running this script again gives byte-identical files.

Usage (Python 3.8+, standard library only), from the workspace root:

    python3 ddpm/assets/make_subset.py ../shared/data/mnist ddpm/assets/mnist-subset

The tests in ddpm/tests/data.rs apply the same rule to the full set and check that
every embedded image and label matches.
"""

import gzip
import hashlib
import os
import struct
import sys

PER_CLASS = 1000
NUM_CLASSES = 10


def read_idx(path, magic):
    """Returns (dims, data) of an IDX file, raw or gzip."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        sys.exit(f"{path}: magic {found:#010x}, expected {magic:#010x}")
    ndims = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndims, raw[4 : 4 + 4 * ndims])
    data = raw[4 + 4 * ndims :]
    size = 1
    for d in dims:
        size *= d
    if len(data) != size:
        sys.exit(f"{path}: {len(data)} data bytes, header declares {size}")
    return dims, data


def find(directory, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    sys.exit(f"{directory}: has neither {name} nor {name}.gz")


def write_gz(path, payload):
    # mtime=0 and no file name in the header: reproducible bytes.
    with open(path, "wb") as f:
        f.write(gzip.compress(payload, compresslevel=9, mtime=0))
    print(f"{path}: {os.path.getsize(path)} bytes; "
          f"sha256 of the uncompressed file {hashlib.sha256(payload).hexdigest()}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, dest = sys.argv[1], sys.argv[2]
    (n, rows, cols), images = read_idx(find(source, "train-images-idx3-ubyte"), 0x803)
    (n_labels,), labels = read_idx(find(source, "train-labels-idx1-ubyte"), 0x801)
    if n != n_labels:
        sys.exit(f"{n} images but {n_labels} labels")

    kept = [0] * NUM_CLASSES
    chosen = []
    for i, label in enumerate(labels):
        if kept[label] < PER_CLASS:
            kept[label] += 1
            chosen.append(i)
    if kept != [PER_CLASS] * NUM_CLASSES:
        sys.exit(f"not enough images per class: {kept}")

    size = rows * cols
    out_images = struct.pack(">IIII", 0x803, len(chosen), rows, cols) + b"".join(
        images[i * size : (i + 1) * size] for i in chosen)
    out_labels = struct.pack(">II", 0x801, len(chosen)) + bytes(labels[i] for i in chosen)
    os.makedirs(dest, exist_ok=True)
    write_gz(os.path.join(dest, "train-images-idx3-ubyte.gz"), out_images)
    write_gz(os.path.join(dest, "train-labels-idx1-ubyte.gz"), out_labels)
    print(f"{len(chosen)} images, source indices {chosen[0]}..{chosen[-1]}; "
          f"first labels {list(out_labels[8:20])}")


if __name__ == "__main__":
    main()
