# The ComfyUI hosts this pack supports and tests on; sourced by setup-host.sh, start.sh and test.sh.
# The first is the primary host (start.sh's default, the whole suite); the last is the oldest supported.
PRIMARY_HOST=0.33.0
KNOWN_HOSTS="0.33.0 0.3.75"
# The newest frontend package that browser tests also run against, on every host.
NEWEST_FRONTEND=1.58.1

# The frontend each host pins in its requirements.txt.
host_frontend() {
  case "$1" in
    0.33.0) echo 1.49.6 ;;
    0.3.75) echo 1.32.9 ;;
    *) return 1 ;;
  esac
}
host_tree() { echo ".host/comfyui-$1/ComfyUI"; }
# A frontend package installed apart, served with --front-end-root.
frontend_root() { echo ".host/frontends/$1/comfyui_frontend_package/static"; }
is_known_host() { case " $KNOWN_HOSTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
