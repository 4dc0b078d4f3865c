# ngx_http_registry_module: build, run and test against Debian 12's nginx.

SHELL     := /bin/bash
NGINX_SRC ?= /usr/share/nginx/src
NGINX     ?= /usr/sbin/nginx
# make puts variables given on its command line into the recipes'
# environment, and nginx reads NGINX there as a list of inherited sockets
# (`make run NGINX=...` would start with "invalid socket number").
unexport NGINX
REPO      := $(abspath .)
BUILD     := $(REPO)/build
MODULE    := $(BUILD)/ngx_http_registry_module.so
# The module with AddressSanitizer and UBSan (`make asan`, `make test-asan`).
ASAN_BUILD  := $(REPO)/build-asan
ASAN_MODULE := $(ASAN_BUILD)/ngx_http_registry_module.so
ASAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined
PORT      ?= 5000
DATA      ?= $(REPO)/data
RUNDIR    := $(REPO)/run

# Build tools and libraries; test clients come from .ci/run and `make deps-test`.
BUILD_PKGS := nginx nginx-dev libjansson-dev libssl-dev build-essential
# t/docker_image.t: mmdebstrap makes the debian:12 base image, busybox-static
# the image it pushes, docker-compose runs docker/compose.yaml.
TEST_PKGS  := curl openssl skopeo umoci docker-registry podman buildah containerd strace \
              docker.io mmdebstrap docker-compose busybox-static \
              glusterfs-server
# Benchmark clients and the comparison registry (`make bench`); ab, from
# apache2-utils, measures HEAD (wrk waits for a body after a HEAD answer).
BENCH_PKGS := wrk nghttp2-client hyperfine apache2-utils curl docker-registry openssl

SRCS := config $(wildcard src/*.c src/*.h)

.PHONY: all asan deps deps-test deps-bench run test test-asan bench clean

all: $(MODULE)

$(BUILD)/Makefile: config
	cd $(NGINX_SRC) && . ./conf_flags && ./configure \
	    --with-cc-opt="-O2 -fPIC" --with-ld-opt=-fPIC "$${NGX_CONF_FLAGS[@]}" \
	    --add-dynamic-module=$(REPO) --builddir=$(BUILD) >$(REPO)/build.log 2>&1 \
	    || { cat $(REPO)/build.log; exit 1; }

$(MODULE): $(BUILD)/Makefile $(SRCS)
	$(MAKE) -f $(BUILD)/Makefile -C $(NGINX_SRC) modules

# The module built with AddressSanitizer and UBSan for `make test-asan`, in
# a build directory of its own so that build/ is never touched.  The same
# conf_flags as above: a module configured with other features than the
# nginx binary is refused by load_module ("not binary compatible"); only
# the compiler flags differ.
asan: $(ASAN_MODULE)

$(ASAN_BUILD)/Makefile: config
	cd $(NGINX_SRC) && . ./conf_flags && ./configure \
	    --with-cc-opt="$(ASAN_CFLAGS) -fPIC" \
	    --with-ld-opt="$(ASAN_CFLAGS) -fPIC" "$${NGX_CONF_FLAGS[@]}" \
	    --add-dynamic-module=$(REPO) --builddir=$(ASAN_BUILD) \
	    >$(REPO)/build-asan.log 2>&1 \
	    || { cat $(REPO)/build-asan.log; exit 1; }

$(ASAN_MODULE): $(ASAN_BUILD)/Makefile $(SRCS)
	$(MAKE) -f $(ASAN_BUILD)/Makefile -C $(NGINX_SRC) modules

# Install whatever is missing (needs root, or sudo).
deps:
	@missing=$$(for p in $(BUILD_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$missing; \
	fi

deps-test:
	@$(MAKE) --no-print-directory deps BUILD_PKGS="$(BUILD_PKGS) $(TEST_PKGS)"

deps-bench:
	@$(MAKE) --no-print-directory deps BUILD_PKGS="$(BUILD_PKGS) $(BENCH_PKGS)"

# nginx in the foreground on 127.0.0.1:$(PORT), store in $(DATA): the access
# log on stdout, warnings and errors on stderr (and both under $(RUNDIR));
# Ctrl-C stops it (t/make_run.t).
run: deps $(MODULE)
	mkdir -p $(DATA) $(RUNDIR)
	sed -e 's|@MODULE@|$(MODULE)|g' -e 's|@PORT@|$(PORT)|g' \
	    -e 's|@DATA@|$(abspath $(DATA))|g' -e 's|@RUNDIR@|$(RUNDIR)|g' \
	    -e "s|@USER@|$$(id -un)|g" -e 's|@EXAMPLES@|$(REPO)/conf-examples|g' \
	    conf-examples/local.conf > $(RUNDIR)/nginx.conf
	$(NGINX) -p $(RUNDIR) -c $(RUNDIR)/nginx.conf -g 'daemon off;'

# The upload tests run three ways: as configured by default (the store's
# work in registry_thread_pool threads, small bodies hashed in the worker),
# with 1m body buffers (bodies hashed in threads too), and with
# registry_thread_pool off (everything in the event loop); see
# REGTEST_THREADS in t/lib/RegTest.pm.
THREADED_TESTS := t/upload_monolithic.t t/upload_chunked.t t/upload_resume.t \
                  t/body_length.t t/crash.t t/disk_full.t t/workers.t t/sha512.t

test: deps-test $(MODULE)
	prove -r t/
	REGTEST_THREADS=1 prove $(THREADED_TESTS)
	REGTEST_THREADS=off prove $(THREADED_TESTS)

# The whole of `make test` against the sanitized module.  Debian's nginx is
# not instrumented, so the ASan runtime has to be preloaded into it: the
# harness does that for the nginx it starts, and only for nginx
# (REGTEST_ASAN in t/lib/RegTest.pm), and fails a test on any sanitizer
# report.
test-asan: export REGTEST_ASAN := 1
test-asan: export REGTEST_MODULE := $(ASAN_MODULE)
test-asan: deps-test $(ASAN_MODULE)
	prove -r t/
	REGTEST_THREADS=1 prove $(THREADED_TESTS)
	REGTEST_THREADS=off prove $(THREADED_TESTS)

# A, B and C side by side on one store (bench/README.md); not part of
# `make test`.  Options: make bench BENCH_ARGS='--rounds 1 --keep'
bench: deps-bench $(MODULE)
	perl bench/run.pl $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(RUNDIR) build.log build-asan.log
