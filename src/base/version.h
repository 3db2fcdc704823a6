#ifndef RB_VERSION_H
#define RB_VERSION_H
#define RAINBOW_VERSION "0.1.0"
#endif
