/*
 * alloc_faults: for the unit tests that make allocations fail (lib/mem.h,
 * FULMAR_FAULT="alloc:N:ENOMEM:1"): set the fault, tell whether it has
 * been used up, and sweep. A sweep (alloc_sweep) sets the fault at
 * N = 1, 2, ... around the code under test and ends at the first N whose
 * fault is left for the probe after it: every allocation of that code has
 * then failed once.
 */
#ifndef FULMAR_TEST_ALLOC_FAULTS_H
#define FULMAR_TEST_ALLOC_FAULTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "lib/fsio.h"
#include "lib/mem.h"

/* The nth mem_* call from now fails (once); n <= 0: no fault. */
static inline void alloc_fault_at(int n)
{
	char spec[32];

	if (n > 0) {
		snprintf(spec, sizeof(spec), "alloc:%d:ENOMEM:1", n);
		setenv("FULMAR_FAULT", spec, 1);
	} else {
		unsetenv("FULMAR_FAULT");
	}
	fsio_init_faults();
}

/* Is the fault still to come (it falls on this probe)? */
static inline bool alloc_fault_left(void)
{
	void *p = mem_alloc(1);

	free(p);
	return p == NULL;
}

/* One run of the code under test while a fault is set: it does the work
 * and checks the outcome (a failure must be a clean one: the error said,
 * nothing half done); true when the run failed for want of memory. */
typedef bool (*alloc_sweep_run)(void *arg);

/* Runs run(arg) with the fault at N = 1, 2, ... (at most limit) until the
 * first N whose fault is left over after the run: every allocation of the
 * run has failed once by then, and that last run, with no fault, must not
 * fail. Returns that N (the run's allocations + 1); *failed (when not
 * NULL) is how many runs failed. Fails the test when the fault still
 * lands at N = limit. Leaves no fault set. */
static inline int alloc_sweep(int limit, alloc_sweep_run run, void *arg, int *failed)
{
	int n, nfailed = 0;

	for (n = 1; n <= limit; n++) {
		bool run_failed;

		alloc_fault_at(n);
		run_failed = run(arg);
		if (alloc_fault_left()) {
			alloc_fault_at(0);
			if (run_failed)
				fail_msg("alloc sweep: N=%d failed, no fault landed", n);
			break;
		}
		if (run_failed)
			nfailed++;
	}
	alloc_fault_at(0);
	if (n > limit)
		fail_msg("alloc sweep: the fault still lands at N=%d", limit);
	if (failed != NULL)
		*failed = nfailed;
	return n;
}

#endif
