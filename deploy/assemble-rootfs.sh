#!/usr/bin/env bash
# Assemble the gateway image's root file system under $1 (runs in the build stage of
# deploy/Dockerfile): the Python interpreter and standard library, the venv /opt/mlwarden, every
# shared library they link (found with ldd), CA certificates, and passwd/group entries for the
# unprivileged user 65532. Nothing else: no shell, no coreutils, no package manager.
set -euo pipefail
root=${1:?usage: assemble-rootfs.sh DIR}
py=$(readlink -f /usr/bin/python3)
pyver=$(basename "$py")                      # python3.11
mkdir -p "$root"/usr/bin "$root"/usr/lib "$root"/etc/ssl/certs "$root"/tmp "$root"/data \
  "$root"/config "$root"/models "$root"/opt
cp -a "$py" "$root/usr/bin/"
ln -s "$pyver" "$root/usr/bin/python3"
# the standard library without what only development needs
cp -a "/usr/lib/$pyver" "$root/usr/lib/"
rm -rf "$root/usr/lib/$pyver"/{ensurepip,idlelib,lib2to3,tkinter,turtledemo,test,venv/scripts} \
  "$root/usr/lib/$pyver"/config-* 2>/dev/null || true
find "$root/usr/lib/$pyver" -name '__pycache__' -prune -exec rm -rf {} +
cp -a /opt/mlwarden "$root/opt/"
# shared libraries: everything ldd resolves for the interpreter and every extension module
{
  ldd "$py"
  find "$root/usr/lib/$pyver" "$root/opt/mlwarden" -name '*.so*' -type f -print0 \
    | xargs -0 -n 50 ldd 2>/dev/null
} | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | sort -u | while read -r lib; do
  case "$lib" in "$root"/*) continue ;; esac
  mkdir -p "$root$(dirname "$lib")"
  cp -aL "$lib" "$root$lib"
done
# the loader at the path binaries name
mkdir -p "$root/lib64"
cp -aL /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
cp -aL /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' \
  > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/data"
# the image must hold no shell and no package manager
for banned in sh bash dash apt apt-get dpkg pip pip3 gcc cc; do
  if find "$root" -name "$banned" -type f | grep -q .; then
    echo "assemble-rootfs: $banned found in the image" >&2
    exit 1
  fi
done
