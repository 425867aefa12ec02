#!/usr/bin/env bash
# The whole test suite on arm64, under emulation: Debian's arm64 CPython 3.11 (unpacked, not
# installed), numpy and scipy's manylinux aarch64 wheels, and the extension modules compiled
# for arm64 by Debian's cross gcc, run by qemu-aarch64. No arm64 machine runs the suite; this
# runs its Python, Cython glue, kernels, threads and flush-to-zero as arm64 code (its times
# mean nothing). Root on Debian 12 (x86-64), network to Debian's mirror and PyPI:
#
#   tools/arm64_suite.sh [pytest arguments]     # work files in ${TMPDIR:-/tmp}/bnnslstm-arm64
#
# It registers qemu-aarch64 with binfmt_misc (until reboot), so that the tests' subprocesses
# (sys.executable) start under emulation too.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="${TMPDIR:-/tmp}/bnnslstm-arm64"
sysroot="$work/sysroot" site="$work/site" pkg="$work/pkg/bnnslstm"
mkdir -p "$work/debs" "$work/wheels" "$sysroot" "$site" "$pkg" "$work/obj"

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q qemu-user gcc-aarch64-linux-gnu > /dev/null
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -q > /dev/null
fi

# CPython 3.11 for arm64 and the libraries it and the wheels load, unpacked into a sysroot
(cd "$work/debs" && apt-get download -q \
    python3.11-minimal:arm64 libpython3.11-minimal:arm64 libpython3.11-stdlib:arm64 \
    libpython3.11-dev:arm64 libc6:arm64 libexpat1:arm64 zlib1g:arm64 libffi8:arm64 \
    libssl3:arm64 libbz2-1.0:arm64 liblzma5:arm64 libsqlite3-0:arm64 libncursesw6:arm64 \
    libtinfo6:arm64 libreadline8:arm64 libuuid1:arm64 libcrypt1:arm64 libgcc-s1:arm64 \
    libstdc++6:arm64 libgfortran5:arm64 libdb5.3:arm64 libnsl2:arm64 libtirpc3:arm64 \
    libgssapi-krb5-2:arm64 libkrb5-3:arm64 libk5crypto3:arm64 libkrb5support0:arm64 \
    libcom-err2:arm64 libkeyutils1:arm64 libgomp1:arm64 > /dev/null 2>&1)
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$sysroot"; done
python="$sysroot/usr/bin/python3.11"

# numpy, scipy and the test dependencies for cp311 aarch64, unpacked onto the path
python3 -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp \
    --abi cp311 --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
    -d "$work/wheels" numpy scipy cython pytest hypothesis threadpoolctl
for wheel in "$work"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$site"; done

# the extension modules: Cython's C (on this machine), compiled for arm64 with meson.build's
# kernel flags
src="$root/src/bnnslstm"
for pyx in "$src"/*.pyx; do
    m=$(basename "$pyx" .pyx)
    python3 -m cython -3 -X language_level=3 -I "$src/.." "$pyx" -o "$work/obj/$m.c"
    aarch64-linux-gnu-gcc -std=c11 -O3 -fPIC -pthread -DNDEBUG -fvisibility=hidden \
        -fno-math-errno -fno-trapping-math -fopenmp-simd -ffp-contract=fast \
        -Wno-unused-function -I "$src" -I "$sysroot/usr/include/python3.11" \
        -idirafter "$sysroot/usr/include" -I "$site/numpy/_core/include" \
        -c "$work/obj/$m.c" -o "$work/obj/$m.o"
    aarch64-linux-gnu-gcc -shared -pthread -o "$pkg/$m.cpython-311-aarch64-linux-gnu.so" \
        "$work/obj/$m.o" -lm -ldl
done
for f in "$src"/*.py "$src"/*.pyi "$src"/*.pxd "$src"/*.h "$src"/*.json "$src"/py.typed; do
    ln -sf "$f" "$pkg/"
done

# arm64 programs (the tests' subprocesses among them) start under qemu, finding the sysroot
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64:' \
        > /proc/sys/fs/binfmt_misc/register
fi
export QEMU_LD_PREFIX="$sysroot" PYTHONPATH="$work/pkg:$site"
# the tests that build a Cython extension against the installed package: arm64 Python's own
# compiler (Debian's arm64 CPython was built with aarch64-linux-gnu-gcc), its headers
export CC="aarch64-linux-gnu-gcc -I$sysroot/usr/include/python3.11 -idirafter $sysroot/usr/include"
"$python" -c "import platform, bnnslstm; print('arm64 check:', platform.machine(), bnnslstm.__file__)"
cd "$work" && "$python" -m pytest -q -p no:cacheprovider "$@" "$root/tests"
