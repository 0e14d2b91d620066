# Reference of the cluster-robust (CR2) standard errors of the project's growth model, with
# clubSandwich (Pustejovsky & Tipton, 2018), the reference implementation.
#
#   pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id), REML (lme4)
#
# on tests/reference/default_growth_input.csv and growth_input.csv (the coding of
# tests/reference/growth_lme4.R: classifiable participants, time = session - 5.5), then
# vcovCR(fit, type = "CR2") -- the working model is the fitted marginal covariance -- and
# coef_test(..., test = "Satterthwaite"): the CR2 SE and the Bell-McCaffrey (Satterthwaite)
# degrees of freedom of every fixed effect.
# Output: tests/reference/growth_cr2.csv (committed). Tests never need R.
#
# Run from the repository root:  Rscript tests/reference/growth_cr2.R
# Written with R 4.2.2, lme4 1.1-31 and clubSandwich 0.5.8 (Debian packages).
suppressPackageStartupMessages({library(lme4); library(clubSandwich)})

ctrl <- lmerControl(optimizer = "nloptwrap",
                    optCtrl = list(ftol_abs = 1e-15, ftol_rel = 1e-15, xtol_abs = 1e-12,
                                   xtol_rel = 1e-12, maxeval = 1e5))
out <- NULL
for (name in c("default_growth_input", "growth_input")) {
  d <- read.csv(file.path("tests/reference", paste0(name, ".csv")), na.strings = "NA",
                stringsAsFactors = FALSE)
  d <- d[d$pattern %in% c("no_rupture", "repaired", "unrepaired") & !is.na(d$pss_sr), ]
  d$time <- d$session - (min(d$session) + max(d$session)) / 2
  d$repaired <- as.numeric(d$pattern == "repaired")
  d$unrepaired <- as.numeric(d$pattern == "unrepaired")
  fit <- lmer(pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id),
              data = d, REML = TRUE, control = ctrl)
  ct <- coef_test(fit, vcov = "CR2", test = "Satterthwaite")
  terms <- sub("^\\(Intercept\\)$", "Intercept", rownames(ct))
  out <- rbind(out, data.frame(input = name, term = terms, estimate = ct$beta, se_cr2 = ct$SE,
                               df_bm = ct$df_Satt))
}
write.csv(out, "tests/reference/growth_cr2.csv", row.names = FALSE)
