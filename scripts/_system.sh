# Sourced by scripts/test and scripts/serve: the Debian packages they need (Chromium, Node.js/npm).
# As root they are installed with apt-get; otherwise the script says what to install.

ensure_debian_packages() {
    local missing=() command package
    for pair in "$@"; do
        command="${pair%%=*}" package="${pair#*=}"
        [ -e "$command" ] || command -v "$command" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "Relay needs these Debian packages: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "installing Debian packages: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}
