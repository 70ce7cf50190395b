/*
 * monotime: seconds on the monotonic clock, for deadlines and expiries
 * that must not jump with the wall clock; and the wall clock in
 * microseconds, for times that are recorded. No mail knowledge.
 */
#ifndef FULMAR_MONOTIME_H
#define FULMAR_MONOTIME_H

#include <stdint.h>

/* Seconds (with fractions) since an arbitrary start; never goes back. */
double monotime(void);

/* Microseconds since the epoch (the wall clock: may jump). */
int64_t walltime_us(void);

#endif
