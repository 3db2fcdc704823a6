# Rainbow gateway build.  Targets: all run serve test unit integration bench asan tsan clean
# deps install uninstall
# Quiet unless V=1.  SANITIZER=address|undefined|thread selects a sanitizer build
# (its own build directory, so objects never mix).

PKGS      := libwebsockets libevent jansson inih sqlite3 openssl
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
LDLIBS    += $(PKG_LIBS) -lpthread

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

.PHONY: all run serve test layers unit integration bench asan tsan clean deps install uninstall
.SECONDARY:
all: $(SERVER)

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

serve:
	$(Q)$(PY) clients/python/example_backend.py -f $(CONF) & backend=$$!; \
	trap 'kill $$backend 2>/dev/null; wait $$backend 2>/dev/null' EXIT; \
	trap : INT; trap 'kill -TERM $$gw 2>/dev/null' TERM; \
	$(SERVER) -f $(CONF) & gw=$$!; \
	rc=0; while kill -0 $$gw 2>/dev/null; do wait $$gw; rc=$$?; done; exit $$rc

unit: $(UNIT_BIN)
	$(Q)set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: $(SERVER)
	$(Q)RAINBOW_BIN=$(abspath $(SERVER)) $(PY) -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

# The include rule of docs/architecture.md (lower layers never include upper ones).
layers:
	$(Q)$(PY) tests/tools/check_layers.py

test: deps
	$(Q)$(MAKE) --no-print-directory layers
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory integration

bench: $(SERVER)
	$(Q)bench/run

asan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=address unit integration

tsan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=thread unit integration

clean:
	rm -rf build build-address build-thread build-undefined

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
