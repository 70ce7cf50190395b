/*
 * monotime: CLOCK_MONOTONIC as seconds, the wall clock in microseconds
 * (monotime.h).
 */
#include "lib/monotime.h"

#include <sys/time.h>
#include <time.h>

double monotime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t walltime_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}
