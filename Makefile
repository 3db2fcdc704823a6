# Rainbow gateway build.  Targets: all run test unit integration bench asan tsan clean deps
# Quiet unless V=1.  SANITIZER=address|undefined|thread selects a sanitizer build
# (its own build directory, so objects never mix).

PKGS      := libwebsockets libevent jansson inih sqlite3 openssl
PY        := /usr/bin/python3
CONF      ?= conf/rainbow.ini

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

LIB_SRC   := $(wildcard protocol/*.c storage/*.c cluster/*.c) $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/librainbow.a
SERVER    := $(BUILD)/rainbow-server
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all run test unit integration bench asan tsan clean deps
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

run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)mkdir -p data
	$(SERVER) -f $(CONF)

unit: $(UNIT_BIN)
	$(Q)set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: $(SERVER)
	$(Q)RAINBOW_BIN=$(abspath $(SERVER)) $(PY) -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

test: deps
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

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
