/*
 * monotime: CLOCK_MONOTONIC as seconds (monotime.h).
 */
#include "lib/monotime.h"

#include <time.h>

double monotime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
