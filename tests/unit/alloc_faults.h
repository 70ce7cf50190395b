/*
 * alloc_faults: for the unit tests that make allocations fail (lib/mem.h,
 * FULMAR_FAULT="alloc:N:ENOMEM:1"): set the fault, and tell whether it
 * has been used up. A sweep sets the fault at N = 1, 2, ... around the
 * code under test and ends at the first N whose fault is left for the
 * probe after it: every allocation of that code has then failed once.
 */
#ifndef FULMAR_TEST_ALLOC_FAULTS_H
#define FULMAR_TEST_ALLOC_FAULTS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif
