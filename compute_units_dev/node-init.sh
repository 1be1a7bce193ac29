#!/bin/sh
# PID 1 of a new sandbox node until it execs systemd.
# $1 = node directory, $2 = hostname, $3 = the project checkout, bound in at the same path (live,
# and visible even when it lies under /tmp, which the node replaces with its own), $4 = the root
# filesystem (the overlay's read-only lowerdir), $5 = cgroup layout: hybrid (v1 controllers +
# cgroup2, as Debian 12) or unified (cgroup2 alone, as RHEL 10), $6 = where the node's entry points
# import the checkout from (outside /tmp).
# Mounts only inside this (private) mount namespace; see shared/docs/sandbox-node.md.
set -eu
N=$1
R=$N/root
mount -t overlay overlay -o "lowerdir=$4,upperdir=$N/upper,workdir=$N/work" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
# a boot id of this boot (the kernel's is the host's, the same across node boots)
mount --bind -o ro "$N/boot_id" "$R/proc/sys/kernel/random/boot_id"
# inside the node's cgroup namespace, each hierarchy shows only the node's sub-tree
case $5 in
unified)
    mount -t cgroup2 -o nsdelegate cgroup2 "$R/sys/fs/cgroup"
    ;;
hybrid)
    mount -t tmpfs -o mode=755 tmpfs "$R/sys/fs/cgroup"
    for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
        mkdir -p "$R/sys/fs/cgroup/$c"
        mount -t cgroup -o "$c" cgroup "$R/sys/fs/cgroup/$c"
    done
    mkdir -p "$R/sys/fs/cgroup/systemd" "$R/sys/fs/cgroup/unified"
    mount -t cgroup -o none,name=systemd cgroup "$R/sys/fs/cgroup/systemd"
    mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup/unified"
    ;;
*)
    echo "unknown cgroup layout $5" >&2
    exit 2
    ;;
esac
# a private /dev with only what services and guests need
mount -t tmpfs -o mode=755,size=64m tmpfs "$R/dev"
cd "$R/dev"
mknod -m 666 null c 1 3; mknod -m 666 zero c 1 5; mknod -m 666 full c 1 7
mknod -m 666 random c 1 8; mknod -m 666 urandom c 1 9; mknod -m 666 tty c 5 0
mknod -m 666 kvm c 10 232; mkdir net; mknod -m 666 net/tun c 10 200; mknod -m 666 fuse c 10 229
touch console; mount --bind /dev/null console
mkdir pts shm mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts pts; ln -s pts/ptmx ptmx
mount -t tmpfs -o mode=1777 tmpfs shm; mount -t mqueue mqueue mqueue
ln -s /proc/self/fd fd; ln -s /proc/self/fd/0 stdin; ln -s /proc/self/fd/1 stdout; ln -s /proc/self/fd/2 stderr
cd /
# systemd-tmpfiles cleans these: never the host's
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/var/tmp"
mkdir -p "$R/var/lib/containers" "$R/var/lib/libvirt"
mount --bind "$N/storage" "$R/var/lib/containers"   # overlay storage cannot stack on an overlay root
mount --bind "$N/libvirt-lib" "$R/var/lib/libvirt"
mkdir -p "$R$3" "$R$6"
mount --bind "$3" "$R$3"
# and at $6, a path outside /tmp for the node's entry points: systemd >= 254 runs generators with
# a private /tmp, in which a checkout under /tmp (fresh clones, CI) does not exist
mount --bind "$3" "$R$6"
hostname "$2"
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
exec env -i container=sandbox PATH=/usr/sbin:/usr/bin:/sbin:/bin /lib/systemd/systemd --show-status=no
