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
# libFuzzer (in libclang-rt-14-dev) and the compiler that links it (`make fuzz`).
FUZZ_PKGS  := clang-14 libclang-rt-14-dev

SRCS := config $(wildcard src/*.c src/*.h)

.PHONY: all asan deps deps-test deps-bench deps-fuzz run test test-asan bench \
        bench-mirror fuzz fuzz-build clean

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

deps-fuzz:
	@$(MAKE) --no-print-directory deps BUILD_PKGS="$(BUILD_PKGS) $(FUZZ_PKGS)"

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
# and the mirror's streamed blobs, whose leader writes and hashes in the
# event loop without a pool
UNTHREADED_TESTS := $(THREADED_TESTS) t/mirror_blob.t t/mirror_follow.t \
                    t/mirror_hosts.t

test: deps-test $(MODULE)
	prove -r t/
	REGTEST_THREADS=1 prove $(THREADED_TESTS)
	REGTEST_THREADS=off prove $(UNTHREADED_TESTS)

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
	REGTEST_THREADS=off prove $(UNTHREADED_TESTS)

# A, B and C side by side on one store (bench/README.md); not part of
# `make test`.  Options: make bench BENCH_ARGS='--rounds 1 --keep'
# Then the pull-through cache's rows (bench/mirror.pl): cold miss for 20
# clients and cache hit against a local blob, beside distribution's proxy;
# `make bench-mirror` runs those alone.
bench: deps-bench $(MODULE)
	perl bench/run.pl $(BENCH_ARGS)
	perl bench/mirror.pl $(MIRROR_BENCH_ARGS)

bench-mirror: deps-bench $(MODULE)
	perl bench/mirror.pl $(MIRROR_BENCH_ARGS)

# libFuzzer targets, one per parser (fuzz/README.md): the module's own
# sources compiled with clang, ASan and UBSan, linked with fuzz/ngx_stubs.c
# instead of nginx.  `make fuzz` runs each for FUZZ_SECONDS from its seed
# corpus (fuzz/corpus/<target>/; what a run adds goes to build-fuzz/) and
# fails on any crash, leak or failed check; the inputs are then in
# build-fuzz/crash-<target>-*.
FUZZ_SECONDS ?= 10
FUZZ_CC      := clang-14
FUZZ_BUILD   := $(REPO)/build-fuzz
FUZZ_TARGETS := route digest content_range range query token manifest \
                upload_state jwt challenge
FUZZ_SRCS    := parse names digest manifest_json jwt mirror_parse
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -I $(NGINX_SRC)/src/core -I $(NGINX_SRC)/src/event \
                -I $(NGINX_SRC)/src/event/modules -I $(NGINX_SRC)/src/os/unix \
                -I $(NGINX_SRC)/src/http -I $(NGINX_SRC)/src/http/modules \
                -I $(NGINX_SRC)/src/http/v2 -I $(BUILD) -I $(REPO)/src \
                -DFUZZ_KEYS='"$(REPO)/fuzz/keys"'
FUZZ_OBJS    := $(FUZZ_SRCS:%=$(FUZZ_BUILD)/ngx_http_registry_%.o) \
                $(FUZZ_BUILD)/ngx_stubs.o
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

fuzz-build: $(FUZZ_BINS)

.SECONDARY: $(FUZZ_OBJS)

# $(BUILD)/Makefile: configure writes the ngx_auto_*.h the headers include
$(FUZZ_BUILD)/ngx_http_registry_%.o: src/ngx_http_registry_%.c $(SRCS) \
                                     $(BUILD)/Makefile
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/ngx_stubs.o: fuzz/ngx_stubs.c $(BUILD)/Makefile
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJS) \
	    -lcrypto -ljansson -o $@

fuzz: deps-fuzz $(FUZZ_BINS)
	@failed=; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	    echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	    if $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	        -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
	        -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- \
	        $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t \
	        >$(FUZZ_BUILD)/fuzz_$$t.log 2>&1; then \
	        grep -h 'stat::number_of_executed_units' $(FUZZ_BUILD)/fuzz_$$t.log; \
	    else \
	        tail -n 40 $(FUZZ_BUILD)/fuzz_$$t.log; failed="$$failed $$t"; \
	    fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(RUNDIR) build.log build-asan.log
