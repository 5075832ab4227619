# Shared by the install scripts: output helpers and Debian package installation.
# Source it after setting SCRIPT_NAME (the prefix of error messages) and TOOLS (.tools/).

say() { printf '%-16s %s\n' "$1" "$2"; }
die() { printf '%s: %s\n' "${SCRIPT_NAME:-install}" "$*" >&2; exit 1; }

# Installs the named Debian packages that are missing, with one index refresh and only when
# something is missing; prints one line per package. Output of apt is kept for errors.
apt_install() { # package...
  local missing=() p
  for p in "$@"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      say "$p" "$(dpkg-query -W -f='${Version}' "$p") (already installed)"
    else
      missing+=("$p")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "missing packages ${missing[*]}: run as root or install them"
    sudo=(sudo)
  fi
  mkdir -p "$TOOLS"
  local aptlog="$TOOLS/apt.log"
  "${sudo[@]}" apt-get update -qq >"$aptlog" 2>&1 || { cat "$aptlog" >&2; die "apt-get update failed"; }
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$aptlog" 2>&1 \
    || { cat "$aptlog" >&2; die "apt-get install ${missing[*]} failed"; }
  for p in "${missing[@]}"; do
    say "$p" "$(dpkg-query -W -f='${Version}' "$p") (installed)"
  done
}
