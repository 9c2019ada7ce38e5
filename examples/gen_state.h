/* gen_state.h - the name of a generator state, as Python's
 * inspect.getgeneratorstate prints it (lower case). Shared by the
 * generator examples. */
#ifndef CORU_EXAMPLES_GEN_STATE_H
#define CORU_EXAMPLES_GEN_STATE_H

#include <coru.h>

static inline const char *state_name(enum coru_gen_state s)
{
    switch (s) {
    case CORU_GEN_CREATED: return "created";
    case CORU_GEN_RUNNING: return "running";
    case CORU_GEN_SUSPENDED: return "suspended";
    case CORU_GEN_CLOSED: return "closed";
    }
    return "?";
}

#endif
