# dsq: weight conversion and quantization for LLM checkpoints.
#
#   make            build ./dsq (release, gcc by default; CC=clang works too)
#   make test       build and run the whole test suite
#   make asan       the same suite under AddressSanitizer + UBSan
#   make demo       convert the bundled tiny DeepSeek-V3 FP8 checkpoint to BF16
#   make bench      benchmarks (not part of the tests)
#   make fuzz       run every libFuzzer harness for FUZZ_SECONDS each (clang)
#
# Every build flavour has its own directory under build/, so switching between
# them never needs a `make clean`. MOREFLAGS is the hook the flavours use.

BUILD     ?= build/release
MOREFLAGS ?=
OPT       ?= -O2
CONFIG    := build/config.mk

MODULES  := core formats quantize tokenizer model weights gguf_export stream verify calib convert
LIB_SRC  := $(sort $(wildcard $(addsuffix /*.c,$(MODULES))))
CLI_SRC  := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_LIB_SRC := $(sort $(filter-out $(TEST_SRC),$(wildcard tests/*.c)))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_LIB_OBJ := $(TEST_LIB_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIBDSQ   := $(BUILD)/libdsq.a

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wpointer-arith -Wformat=2 -Wundef -Wvla -Wwrite-strings -Winit-self
# -gdwarf-4: valgrind 3.19 (Debian 12) cannot read clang 14's default DWARF 5.
# -ffp-contract=off: the GGUF quantizers are bit-exact with ggml only if the
# compiler does not fuse multiply-adds behind our back (specs/formats.md §2.6).
CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) -gdwarf-4 -ffp-contract=off -fopenmp -pthread $(WARN) -I. \
          $(DEPS_CFLAGS) $(MOREFLAGS)
LDLIBS  = $(DEPS_LIBS) -lm
LDFLAGS := -fopenmp -pthread $(MOREFLAGS)

.PHONY: all test asan demo bench fuzz fuzz-smoke clean check-clean
.SECONDARY:
.DEFAULT_GOAL := all

-include $(CONFIG)

$(CONFIG): scripts/configure.sh
	@mkdir -p $(dir $@)
	sh scripts/configure.sh > $@.tmp && mv $@.tmp $@

all: dsq

ifeq ($(BUILD),build/release)
dsq: $(BUILD)/dsq
	cp $< $@
else
dsq: $(BUILD)/dsq
endif

$(BUILD)/%.o: %.c $(CONFIG) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIBDSQ): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/dsq: $(CLI_OBJ) $(LIBDSQ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_%.o: tests/test_%.c $(CONFIG) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CMOCKA_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_LIB_OBJ) $(LIBDSQ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CMOCKA_LIBS)

test: $(BUILD)/dsq $(TEST_BIN)
	sh scripts/run-tests.sh $(BUILD)

SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
asan:
	$(MAKE) BUILD=build/asan OPT=-O1 MOREFLAGS="$(SAN)" test

demo: dsq
	sh scripts/demo.sh

BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:%.c=$(BUILD)/%)

$(BUILD)/bench/%: bench/%.c $(LIBDSQ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBDSQ) $(LDFLAGS) $(LDLIBS)

bench: dsq $(BENCH_BIN)
	BUILD=$(BUILD) sh bench/run.sh

# libFuzzer harnesses fuzz/fuzz_*.c (clang); fuzz-smoke is the short run for CI
FUZZ_SECONDS ?= 60
fuzz:
	sh scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-smoke:
	sh scripts/fuzz.sh 10

clean:
	rm -rf build dsq

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:%=%.d) $(TEST_LIB_OBJ:.o=.d)
