#!/bin/sh
# The README's commands on a fresh Debian machine of any release, from a host whose PID 1 is not
# systemd: `debootstrap --variant=minbase RELEASE` into build/fresh/RELEASE (made anew each run),
# a fresh clone of this checkout's HEAD at /root/compute-units in it, and COMMAND run there as
# root. The tree becomes the root of a private mount namespace by pivot_root, not chroot: nsenter
# and `crun exec` (which the sandbox nodes and containers use) give a joining process the mount
# namespace's root, which a chroot does not change. The host's own network configuration comes
# along, as any machine of this site has it: resolv.conf, apt's config snippets, pip's config and
# CA certificates, and read-only binds of local directories pip's config names.
#
# Usage: compute_units_dev/fresh-machine.sh RELEASE [COMMAND]   (default: make demo && make test)
# Example: compute_units_dev/fresh-machine.sh trixie 'make test'
set -eu
release=${1:?usage: $0 RELEASE [COMMAND]}
command=${2:-make demo && make test}
repo=$(cd "$(dirname "$0")/.." && pwd)
root=$repo/build/fresh/$release

# everything below, debootstrap's own mounts included, happens in a private mount namespace:
# the host's mount table never changes
if [ "${FRESH_MACHINE_INSIDE:-}" != 1 ]; then
    FRESH_MACHINE_INSIDE=1 exec unshare --mount --propagation private "$0" "$release" "$command"
fi
mount --make-rprivate /
rm -rf "$root"
mkdir -p "$root"
echo "== debootstrap --variant=minbase $release"
debootstrap --variant=minbase "$release" "$root" >"$root.debootstrap.log" 2>&1 ||
    { tail -20 "$root.debootstrap.log"; exit 1; }
git clone -q "$repo" "$root/root/compute-units"

mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs -o size=8g tmpfs "$root/tmp"
cp /etc/resolv.conf "$root/etc/resolv.conf"
for f in /etc/apt/apt.conf.d/*; do [ -e "$root$f" ] || cp "$f" "$root$f"; done
mkdir -p "$root/usr/local/share/ca-certificates" "$root/root/.config/pip"
cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
for f in /etc/pip.conf /root/.config/pip/pip.conf; do [ ! -f "$f" ] || cp "$f" "$root$f"; done
locals=$(cat /etc/pip.conf /root/.config/pip/pip.conf 2>/dev/null | grep -o '\(file://\)\?/[^ ]*' | sed 's|^file://||') || true
for d in $locals ${PIP_FIND_LINKS:-}; do
    d=${d%/simple}
    if [ -d "$d" ] && [ ! -d "$root$d" ]; then
        mkdir -p "$root$d"
        mount --bind -o ro "$d" "$root$d"
    fi
done
cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
cd /root/compute-units
# a fresh machine has neither make nor git; the README's commands install everything else
exec /usr/bin/env -i HOME=/root TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    ${PIP_CERT:+PIP_CERT=/etc/ssl/certs/ca-certificates.crt} ${PIP_FIND_LINKS:+PIP_FIND_LINKS=$PIP_FIND_LINKS} \
    /bin/sh -c "set -e; grep PRETTY_NAME /etc/os-release; apt-get update -qq;
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make git ca-certificates >/dev/null;
        echo '== $command'; $command"
