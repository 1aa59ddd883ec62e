/* Portable firmware app. A port's entry point calls app_setup() once, then app_loop() forever. */
#ifndef TP_APP_H
#define TP_APP_H

#ifdef __cplusplus
extern "C" {
#endif

void app_setup(void);
void app_loop(void);

#ifdef __cplusplus
}
#endif
#endif
