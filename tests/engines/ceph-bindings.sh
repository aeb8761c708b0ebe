#!/bin/sh
# Make Debian's Ceph bindings (python3-rados, python3-rbd: PyPI has none)
# importable in the venvs whose Pythons are given. When a venv's Python has
# the extension suffix Debian built them for, just those two modules are
# linked into a directory of its site-packages that a .pth file (a path
# relative to site-packages) adds to sys.path; the rest of Debian's
# dist-packages stays out. Otherwise any earlier link is removed, and the RBD
# tests say in one line why they skip.
set -eu
dist=/usr/lib/python3/dist-packages
name=fsstore-ceph-bindings
for python in "$@"; do
	site=$("$python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
	suffix=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
	if [ -e "$dist/rados$suffix" ] && [ -e "$dist/rbd$suffix" ]; then
		mkdir -p "$site/$name"
		ln -sfn "$dist/rados$suffix" "$dist/rbd$suffix" "$site/$name/"
		echo "$name" > "$site/$name.pth"
	else
		rm -rf "${site:?}/$name" "$site/$name.pth"
	fi
done
