# Rainbow gateway build.  Targets: all run serve test unit integration bench asan tsan fuzz
# clean deps install uninstall
# Quiet unless V=1.  SANITIZER=address|undefined|thread selects a sanitizer build
# (its own build directory, so objects never mix).  make fuzz [FUZZ_SECONDS=60]
# [FUZZ_TARGETS=...]: the libFuzzer targets of tests/fuzz/ (clang, build-fuzz/).

PKGS      := libwebsockets libevent libevent_openssl jansson inih sqlite3 openssl
PY        := /usr/bin/python3
CONF      ?= conf/rainbow.ini
PREFIX    ?= /usr/local
SYSCONFDIR ?= /etc
BINDIR    ?= $(PREFIX)/bin
MAN8DIR   ?= $(PREFIX)/share/man/man8
DOCDIR    ?= $(PREFIX)/share/doc/rainbow
UNITDIR   ?= $(PREFIX)/lib/systemd/system

ifeq ($(SANITIZER),)
BUILD     ?= build
SANFLAGS  :=
else
BUILD     ?= build-$(SANITIZER)
SANFLAGS  := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
ifeq ($(SANITIZER),address)
SANFLAGS  += -fsanitize=undefined
endif
endif

CC        ?= cc
OPT       ?= -O2
WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wno-unused-parameter
ifneq ($(CI),)
WARN      += -Werror
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS    += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(SANFLAGS) -MMD -MP -I. $(PKG_CFLAGS)
LDFLAGS   += $(SANFLAGS)
LDLIBS    += $(PKG_LIBS) -lev -lpthread -lm

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRC   := $(wildcard protocol/*.c storage/*.c cluster/*.c src/*/*.c) $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/librainbow.a
SERVER    := $(BUILD)/rainbow-server
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# The C client (clients/c/README.md): librainbow-client.a (its own name: the
# server's library is librainbow.a) with the protocol codecs it reuses, and
# rainbow-cli. Unit tests named test_client_*.c link against it.
CLIENT_SRC := $(filter-out clients/c/cli.c,$(wildcard clients/c/*.c))
CLIENT_OBJ := $(CLIENT_SRC:%.c=$(BUILD)/obj/%.o) \
              $(addprefix $(BUILD)/obj/protocol/,packet.o sign.o rb.o)
CLIENT_LIB := $(BUILD)/librainbow-client.a
CLI        := $(BUILD)/rainbow-cli

.PHONY: all run serve demo test layers unit integration clients-test js-test browser-test bench bench-quick asan tsan fuzz clean deps install uninstall
.SECONDARY:
all: $(SERVER) $(CLIENT_LIB) $(CLI)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(SERVER): $(BUILD)/obj/src/main.o $(LIB)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(CLIENT_LIB): $(CLIENT_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(CLI): $(BUILD)/obj/clients/c/cli.o $(CLIENT_LIB)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# (the shorter stem wins over the rule above)
$(BUILD)/tests/test_client_%: $(BUILD)/obj/tests/unit/test_client_%.o $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# The benchmarks' load generator (bench/loadgen.c, `loadgen --help`): one epoll
# loop, the client library's codecs, its own histogram (bench/hdr.c), which
# tests/unit/test_hdr.c tests alone. Built for make bench.
LOADGEN := $(BUILD)/bench/loadgen
bench: $(LOADGEN)
$(LOADGEN): $(BUILD)/obj/bench/loadgen.o $(BUILD)/obj/bench/hdr.o $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lm

$(BUILD)/tests/test_hdr: $(BUILD)/obj/tests/unit/test_hdr.o $(BUILD)/obj/bench/hdr.o
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -lm

# fuzz: each libFuzzer target in tests/fuzz/ (see its README.md), built with
# clang, ASan and UBSan (any report aborts) in $(FUZZ_BUILD)/, linking only
# the modules it exercises, then run for FUZZ_SECONDS from a copy of its seed
# corpus (the committed one never changes). Every target runs; fails if any
# found a crash, leak, timeout or sanitizer report (the input is kept in
# $(FUZZ_BUILD)/artifacts/<target>/, the whole log in $(FUZZ_BUILD)/<target>.log).
# FUZZ_ARGS adds libFuzzer options.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build-fuzz
FUZZ_ALL     := packet http_head http_resp link token
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE -g -O1 $(WARN) $(FUZZ_SAN) -MMD -MP -I. \
                $(shell pkg-config --cflags libevent jansson 2>/dev/null)
FUZZ_SRC_packet    := protocol/packet.c protocol/rb.c
FUZZ_SRC_http_head := src/http/http_head.c protocol/rb.c
FUZZ_SRC_http_resp := src/http/http_resp.c src/http/http_head.c protocol/rb.c
FUZZ_SRC_link      := protocol/link.c protocol/beacon.c protocol/rb.c
FUZZ_SRC_token     := protocol/token.c protocol/rb.c
FUZZ_LIBS_http_resp = $(shell pkg-config --libs libevent 2>/dev/null)
FUZZ_LIBS_link      = $(shell pkg-config --libs libcrypto 2>/dev/null)
FUZZ_LIBS_token     = $(shell pkg-config --libs libcrypto jansson 2>/dev/null)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CLANG   $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

define FUZZ_LINK
$(FUZZ_BUILD)/fuzz_$(1): $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_$(1).o $(FUZZ_SRC_$(1):%.c=$(FUZZ_BUILD)/obj/%.o)
	@$$(if $$(Q),echo "  LINK    $$@")
	$$(Q)$$(FUZZ_CC) $$(FUZZ_SAN) -o $$@ $$^ $$(FUZZ_LIBS_$(1))
endef
$(foreach t,$(FUZZ_ALL),$(eval $(call FUZZ_LINK,$(t))))

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
	$(Q)fail=0; for t in $(FUZZ_TARGETS); do \
		c=$(FUZZ_BUILD)/corpus/$$t; a=$(FUZZ_BUILD)/artifacts/$$t; \
		log=$(FUZZ_BUILD)/$$t.log; dict=; \
		[ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
		rm -rf $$c $$a && mkdir -p $$c $$a && cp tests/fuzz/corpus/$$t/* $$c/; \
		echo "== fuzz_$$t ($(FUZZ_SECONDS) s)"; \
		if $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
			-print_final_stats=1 -artifact_prefix=$$a/ $$dict $(FUZZ_ARGS) \
			$$c >$$log 2>&1; then \
			grep -E '^#[0-9]+[[:space:]]+DONE|^Done|^stat::average_exec_per_sec' $$log; \
		else \
			fail=1; tail -n 60 $$log; echo "fuzz_$$t FAILED; input(s):"; \
			ls -l $$a; \
		fi; \
	done; exit $$fail

# Installs missing Debian packages (no-op when all are present).
deps:
	$(Q).ci/deps

# run: install what is missing, build, serve.
# serve: the gateway on $(CONF) beside the example backend (clients/python/
# example_backend.py, which reads its address and token from the same file),
# without building (SERVER= may name any binary). Both run in the background
# of one shell, and the backend is stopped when the gateway exits, however
# it exits. ^C reaches the gateway directly (it shuts down gracefully; a
# second ^C exits at once), so the shell only keeps waiting; a SIGTERM to
# make reaches the shell alone and is passed on.
run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory serve

# demo: the chat demo (clients/demo): the gateway and a chat backend built on
# clients/python, whose page uses clients/js; prints the page's address.
demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(PY) clients/demo/demo.py --bin $(SERVER) --dir $(BUILD)/demo

serve:
	$(Q)$(PY) clients/python/example_backend.py -f $(CONF) & backend=$$!; \
	trap 'kill $$backend 2>/dev/null; wait $$backend 2>/dev/null' EXIT; \
	trap : INT; trap 'kill -TERM $$gw 2>/dev/null' TERM; \
	$(SERVER) -f $(CONF) & gw=$$!; \
	rc=0; while kill -0 $$gw 2>/dev/null; do wait $$gw; rc=$$?; done; exit $$rc

unit: $(UNIT_BIN)
	$(Q)set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: $(SERVER) $(CLI)
	$(Q)RAINBOW_BIN=$(abspath $(SERVER)) $(PY) -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

# The include rule of docs/architecture.md (lower layers never include upper ones).
layers:
	$(Q)$(PY) tests/tools/check_layers.py

test: deps
	$(Q)$(MAKE) --no-print-directory layers
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory integration
	$(Q)$(MAKE) --no-print-directory clients-test

# The client SDKs' own suites (clients/*/README.md), against the real gateway:
# the Python helper's unit tests, the JavaScript client's (node --test; npm ci
# installs the pinned ws), and the chat demo in headless Chromium
# (tests/browser/, playwright-core; screenshots in $(BUILD)/artifacts).
clients-test: js-test browser-test
	$(Q)$(PY) -m pytest -q -p no:cacheprovider clients/python/tests

js-test: $(SERVER)
	$(Q)cd clients/js && npm ci --no-audit --no-fund --loglevel=error && \
		RAINBOW_BIN=$(abspath $(SERVER)) node --test

browser-test: $(SERVER)
	$(Q)cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && \
		RAINBOW_BIN=$(abspath $(SERVER)) BROWSER_ARTIFACTS=$(abspath $(BUILD))/artifacts \
		node --test

bench: $(SERVER)
	$(Q)bench/run

# Every scenario in under 3 minutes: one short round each, smaller sizes
# (bench/README.md); figures for a smoke check, not for comparison.
bench-quick: $(SERVER) $(LOADGEN)
	$(Q)BENCH_QUICK=1 bench/run

asan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=address unit integration

tsan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=thread unit integration

clean:
	rm -rf build build-address build-thread build-undefined build-fuzz

# make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc]
#   $(PREFIX)/bin/rainbow-server
#   $(PREFIX)/share/man/man8/rainbow-server.8
#   $(PREFIX)/share/doc/rainbow/rainbow.ini.example  (conf/rainbow.ini; never
#       installed as a live config, so a reinstall overwrites nothing of yours)
#   $(PREFIX)/lib/systemd/system/rainbow-server.service, which runs
#       $(PREFIX)/bin/rainbow-server on $(SYSCONFDIR)/rainbow/rainbow.ini
# The unit and the man page name the default paths; rewrite them to these.
INSTALL_PATHS = sed -e 's|/usr/local/bin/|$(BINDIR)/|g' \
	-e 's|/usr/local/share/doc/rainbow/|$(DOCDIR)/|g' \
	-e 's|/usr/local/lib/systemd/system/|$(UNITDIR)/|g' \
	-e 's|/etc/rainbow/|$(SYSCONFDIR)/rainbow/|g'
install: $(SERVER)
	$(Q)install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MAN8DIR) $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(UNITDIR)
	$(Q)install -m 0755 $(SERVER) $(DESTDIR)$(BINDIR)/rainbow-server
	$(Q)install -m 0644 conf/rainbow.ini $(DESTDIR)$(DOCDIR)/rainbow.ini.example
	$(Q)$(INSTALL_PATHS) docs/rainbow-server.8 > $(DESTDIR)$(MAN8DIR)/rainbow-server.8
	$(Q)$(INSTALL_PATHS) conf/rainbow-server.service > $(DESTDIR)$(UNITDIR)/rainbow-server.service
	$(Q)chmod 0644 $(DESTDIR)$(MAN8DIR)/rainbow-server.8 $(DESTDIR)$(UNITDIR)/rainbow-server.service
	@echo "installed $(DESTDIR)$(BINDIR)/rainbow-server; example configuration:"
	@echo "  $(DESTDIR)$(DOCDIR)/rainbow.ini.example (copy it to $(SYSCONFDIR)/rainbow/rainbow.ini)"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/rainbow-server $(DESTDIR)$(MAN8DIR)/rainbow-server.8 \
		$(DESTDIR)$(DOCDIR)/rainbow.ini.example $(DESTDIR)$(UNITDIR)/rainbow-server.service
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
