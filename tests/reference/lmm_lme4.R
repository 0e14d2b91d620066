# Reference fits of helpers.lmm (the project's own linear mixed model engine) with lme4 and
# lmerTest (Satterthwaite denominator df), REML and ML, tightly converged.
#
# Models (name: data, formula):
#   sleep_slope  : tests/data/lme4_sleepstudy.csv, Reaction ~ Days + (Days | Subject)
#   sleep_int    : same data, Reaction ~ Days + (1 | Subject)
#   sleep_quad   : same data, Days2 = Days^2, Reaction ~ Days + Days2 + (Days + Days2 | Subject)
#                  (q = 3 random effects per group)
#   sleep_onerow : sleepstudy with Subject 308 cut to its first row (a group of one row),
#                  Reaction ~ Days + (Days | Subject)
#   default_growth, trial1160, noslope, downdate : the growth model
#                  pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id)
#                  on default_growth_input.csv, lmm_trial1160_input.csv, lmm_noslope_input.csv,
#                  lmm_downdate_input.csv
#                  (classifiable patterns, rows with missing pss_sr dropped,
#                  time = session - (min + max) / 2), as growth_lme4.R builds it.
#
# Outputs (committed; tests never need R):
#   lmm_lme4_fixed.csv  : model, reml, term, estimate, se, df (Satterthwaite, lmerTest)
#   lmm_lme4_random.csv : model, reml, grp, var1, var2, vcov, sdcor (as.data.frame(VarCorr))
#   lmm_lme4_fit.csv    : model, reml, loglik, singular, n_obs, n_groups, sigma, deviance,
#                         aic, bic
#   lmm_lme4_theta.csv  : model, reml, index, theta (lme4's column-wise lower triangle)
#   lmm_lme4_ranef.csv  : model, reml, group, term, value (conditional modes, ranef())
#
# Run from the repository root:  Rscript tests/reference/lmm_lme4.R
# Written with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3. The "downdate" rows were appended on
# 2026-12-05 by a run on another machine; there a full re-run moved the other models' values by
# ~1e-8 relative (nloptwrap's stopping point), far inside the tests' tolerances, and those rows
# were kept as first written.
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})

ref <- "tests/reference"
ctrl <- lmerControl(optimizer = "nloptwrap",
                    optCtrl = list(ftol_abs = 1e-15, ftol_rel = 1e-15, xtol_abs = 1e-12,
                                   xtol_rel = 1e-12, maxeval = 1e5))

growth_data <- function(path) {
  d <- read.csv(path, na.strings = "NA", stringsAsFactors = FALSE)
  d <- d[d$pattern %in% c("no_rupture", "repaired", "unrepaired") & !is.na(d$pss_sr), ]
  d$time <- d$session - (min(d$session) + max(d$session)) / 2
  d$repaired <- as.numeric(d$pattern == "repaired")
  d$unrepaired <- as.numeric(d$pattern == "unrepaired")
  d
}

sleep <- read.csv("tests/data/lme4_sleepstudy.csv", stringsAsFactors = FALSE)
sleep$Subject <- as.character(sleep$Subject)
sleep$Days2 <- sleep$Days^2
onerow <- sleep[sleep$Subject != "308" | !duplicated(sleep$Subject), ]

growth <- pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id)
models <- list(
  sleep_slope = list(data = sleep, formula = Reaction ~ Days + (Days | Subject)),
  sleep_int = list(data = sleep, formula = Reaction ~ Days + (1 | Subject)),
  sleep_quad = list(data = sleep, formula = Reaction ~ Days + Days2 + (Days + Days2 | Subject)),
  sleep_onerow = list(data = onerow, formula = Reaction ~ Days + (Days | Subject)),
  default_growth = list(data = growth_data(file.path(ref, "default_growth_input.csv")),
                        formula = growth),
  trial1160 = list(data = growth_data(file.path(ref, "lmm_trial1160_input.csv")),
                   formula = growth),
  noslope = list(data = growth_data(file.path(ref, "lmm_noslope_input.csv")),
                 formula = growth),
  downdate = list(data = growth_data(file.path(ref, "lmm_downdate_input.csv")),
                  formula = growth)
)

strip <- function(x) sub("^\\(Intercept\\)$", "Intercept", x)
fixed <- random <- fits <- thetas <- ranefs <- list()
for (name in names(models)) {
  for (reml in c(TRUE, FALSE)) {
    m <- models[[name]]
    fit <- lmerTest::lmer(m$formula, data = m$data, REML = reml, control = ctrl)
    cf <- summary(fit, ddf = "Satterthwaite")$coefficients
    key <- paste(name, reml)
    fixed[[key]] <- data.frame(model = name, reml = reml, term = strip(rownames(cf)),
                               estimate = cf[, "Estimate"], se = cf[, "Std. Error"],
                               df = cf[, "df"])
    vc <- as.data.frame(VarCorr(fit))
    random[[key]] <- data.frame(model = name, reml = reml, grp = vc$grp, var1 = vc$var1,
                                var2 = vc$var2, vcov = vc$vcov, sdcor = vc$sdcor)
    fits[[key]] <- data.frame(model = name, reml = reml, loglik = as.numeric(logLik(fit)),
                              singular = isSingular(fit), n_obs = nobs(fit),
                              n_groups = as.numeric(ngrps(fit)[1]), sigma = sigma(fit),
                              deviance = as.numeric(if (reml) REMLcrit(fit) else deviance(fit)),
                              aic = AIC(fit), bic = BIC(fit))
    re <- ranef(fit)[[1]]
    ranefs[[key]] <- data.frame(model = name, reml = reml, group = rownames(re),
                                term = rep(colnames(re), each = nrow(re)),
                                value = unlist(re, use.names = FALSE))
    th <- getME(fit, "theta")
    thetas[[key]] <- data.frame(model = name, reml = reml, index = seq_along(th),
                                theta = unname(th))
    msgs <- fit@optinfo$conv$lme4$messages
    if (!is.null(msgs)) cat(key, ":", msgs, "\n")
  }
}

write_out <- function(x, file) {
  out <- do.call(rbind, x)
  write.csv(out, file.path(ref, file), row.names = FALSE, na = "")
}
write_out(fixed, "lmm_lme4_fixed.csv")
write_out(random, "lmm_lme4_random.csv")
write_out(fits, "lmm_lme4_fit.csv")
write_out(thetas, "lmm_lme4_theta.csv")
write_out(ranefs, "lmm_lme4_ranef.csv")
cat(sprintf("wrote lmm_lme4_*.csv (lme4 %s, lmerTest %s, %s)\n", packageVersion("lme4"),
            packageVersion("lmerTest"), R.version.string))
