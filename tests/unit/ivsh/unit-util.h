/*
 * Helpers shared by the protocol unit tests and the fuzz driver
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSH_UNIT_UTIL_H
#define IVSH_UNIT_UTIL_H

#include <stdbool.h>

/* Number of fds this process has open: the leak check of every test */
unsigned count_fds(void);

/* True if @fd is an open descriptor */
bool fd_is_open(int fd);

#endif
