#!/usr/bin/env bash
# Run scripts/test_pythons.sh (the same tests, the same CLI check) on CPython 3.14 and 3.15, which
# Debian 12 does not package: in a throwaway Debian forky chroot made by mmdebstrap, with forky's
# python3.14 and python3.15. The chroot gets the host's extra CA certificates and pip
# configuration (so pip reaches the same package index), a copy of this working tree (tracked
# and untracked files, not ignored ones), and is unmounted and removed on every exit.
# Needs root (chroot, mounts) and mmdebstrap (installed from Debian 12's apt when missing);
# without them it prints why it skipped and exits 0. A failing test fails it.
#
#   bash scripts/forky_pythons.sh            # 3.14 and 3.15
#   bash scripts/forky_pythons.sh 3.15       # just one
set -euo pipefail
cd "$(dirname "$0")/.."

versions=("${@:-3.14 3.15}")
read -r -a versions <<< "${versions[*]}"
mirror="${FORKY_MIRROR:-http://deb.debian.org/debian}"

skip() {
    echo "== Python ${versions[*]} (Debian forky chroot): skipped: $*"
    exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (mmdebstrap, chroot and mounts); run it as root"
if ! command -v mmdebstrap >/dev/null && command -v apt-get >/dev/null; then
    echo "== installing mmdebstrap from apt"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap; } \
        >/dev/null 2>&1 || true
fi
command -v mmdebstrap >/dev/null || skip "no mmdebstrap, and apt-get could not install it"

began=$SECONDS
work="$(mktemp -d /var/tmp/partally-forky.XXXXXX)"
root="$work/root"

mounts_under_root() {  # deepest first
    awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}

cleanup() {
    local status=$? mount left
    for _ in 1 2 3; do
        while read -r mount; do
            [ -n "$mount" ] && umount "$mount" 2>/dev/null
        done < <(mounts_under_root)
    done
    while read -r mount; do
        [ -n "$mount" ] && umount --lazy "$mount" 2>/dev/null
    done < <(mounts_under_root)
    left="$(mounts_under_root)"
    if [ -n "$left" ]; then  # never remove a tree that still has something mounted in it
        echo "== forky chroot: could not unmount, left in place: $left" >&2
        status=1
    else
        rm -rf --one-file-system "$work"
    fi
    echo "== forky chroot: cleaned up after $((SECONDS - began)) s"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

packages=(ca-certificates g++ cmake git)
for v in "${versions[@]}"; do
    packages+=("python$v-venv" "python$v-dev")
done
echo "== forky chroot: mmdebstrap forky from $mirror into $root"
# forky's Release file can be past its Valid-Until (a frozen snapshot of the archive).
mmdebstrap --quiet --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' \
    --include="$(IFS=,; echo "${packages[*]}")" forky "$root" "$mirror"
size="$(du -sh --one-file-system "$root" | cut -f1)"
echo "== forky chroot: made in $((SECONDS - began)) s ($size)"

# The host's extra CA certificates (a proxy's, a private index's), trusted in the chroot too.
if [ -d /usr/local/share/ca-certificates ]; then
    cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
chroot "$root" update-ca-certificates >/dev/null 2>&1

# The host's pip configuration, and the local folders and files it names (find-links, a file://
# index with the folder above it, a constraints file), read-only at the same paths.
pip_env=()
while IFS= read -r line; do
    pip_env+=("$line")
done < <(env | grep -E '^(PIP_[A-Z0-9_]+|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY|CI)=' || true)
configs=()
for path in /etc/pip.conf /etc/xdg/pip /root/.config/pip /root/.pip; do
    if [ -e "$path" ]; then
        mkdir -p "$root$(dirname "$path")"
        cp -a "$path" "$root$path"
        configs+=("$path")
    fi
done
for path in $( { [ "${#configs[@]}" = 0 ] || cat $(find "${configs[@]}" -type f); \
                 printf '%s\n' "${pip_env[@]}"; } \
               | grep -oE "(file://)?/[^[:space:]\"',;]+" | sed 's|^file://||' | sort -u); do
    path="${path%/}"
    if [ "$(basename "$path")" = simple ]; then  # a local index: its pages link to ../../files/
        path="$(dirname "$path")"
    fi
    if [ -z "$path" ] || [ ! -e "$path" ] || [ -e "$root$path" ]; then
        continue
    elif [ -d "$path" ]; then
        mkdir -p "$root$path"
        mount --bind "$path" "$root$path"
        mount -o remount,bind,ro "$root$path"
    else
        mkdir -p "$root$(dirname "$path")"
        cp -a "$path" "$root$path"
    fi
done

mount -t proc proc "$root/proc"
mount --bind /sys "$root/sys"
mount --bind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/dev/shm"  # multiprocessing's semaphores
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

mkdir -p "$root/src/partally"
git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$root/src/partally"

chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${pip_env[@]}" \
    bash /src/partally/scripts/test_pythons.sh "${versions[@]}"
