/*
 * monotime: seconds on the monotonic clock, for deadlines and expiries
 * that must not jump with the wall clock. No mail knowledge.
 */
#ifndef FULMAR_MONOTIME_H
#define FULMAR_MONOTIME_H

/* Seconds (with fractions) since an arbitrary start; never goes back. */
double monotime(void);

#endif
