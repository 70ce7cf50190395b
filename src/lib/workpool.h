/*
 * workpool: a fixed set of threads that run blocking jobs (fsync, Maildir
 * writes) off the event loop, and hand each finished job back to the loop
 * thread. No mail knowledge.
 *
 * Ownership: the caller owns `arg`; the pool never frees it. work() runs
 * in a pool thread; done() runs later in the loop thread, once per job, in
 * completion order. workpool_free() waits for running jobs, runs the
 * pending done() callbacks, and must be called from the loop thread.
 */
#ifndef FULMAR_WORKPOOL_H
#define FULMAR_WORKPOOL_H

struct event_base;
struct workpool;

typedef void (*workpool_fn)(void *arg);

struct workpool *workpool_new(struct event_base *base, int nthreads);
void workpool_submit(struct workpool *pool, workpool_fn work,
		     workpool_fn done, void *arg);
/* From a pool thread (inside a work function): runs done(arg) in the loop
 * thread, like a job's done. A job submitted with done == NULL hands
 * nothing back by itself, so its work can report through workpool_post
 * when and as often as it decides (for example once for a whole batch of
 * other jobs' results). */
void workpool_post(struct workpool *pool, workpool_fn done, void *arg);
void workpool_free(struct workpool *pool);

#endif
