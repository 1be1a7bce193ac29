#!/bin/sh
# Prints the NAMES (never values) of the variables it was given, then idles until SIGTERM.
echo "service $(cat /VERSION) starting as PID $$"
env | sed -n 's/^\([A-Z_][A-Z0-9_]*\)=.*/\1/p' | sort | tr '\n' ' ' | sed 's/^/variables: /'
echo
if [ "$(cat /EXIT_AT_START)" = yes ]; then
    echo "service $(cat /VERSION): cannot start (test image built to fail)" >&2
    exit 1
fi
trap 'echo "service $(cat /VERSION) stopping"; exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
