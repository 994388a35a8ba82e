#!/bin/sh
echo "api listening on ${PORT}"
