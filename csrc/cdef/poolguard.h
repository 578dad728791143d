int pm_guard_start(int *wfd);
int pm_guard_arm(int wfd, const char *path, uint64_t value);
int pm_guard_disarm(int wfd);
