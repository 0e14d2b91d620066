# Reference fit of the project's growth model with lme4 (the reference implementation).
#
#   pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id), REML
#
# on tests/reference/growth_input.csv (written by make_growth_input.py), with the same
# coding as helpers.growth.fit_growth: only classifiable participants (no_rupture,
# repaired, unrepaired; reference no_rupture), rows with missing pss_sr dropped, and
# time = session - 5.5 (the middle of sessions 1-10, fit_growth's default "mid").
# Also the ML likelihood-ratio test of the time x pattern interaction (anova()).
# Output: tests/reference/growth_lme4.csv (committed). Tests never need R.
#
# Run from the repository root:  Rscript tests/reference/growth_lme4.R
# Written with R 4.2.2 and lme4 1.1-31.
suppressPackageStartupMessages(library(lme4))

args <- commandArgs(trailingOnly = TRUE)
input <- if (length(args) >= 1) args[1] else "tests/reference/growth_input.csv"
output <- if (length(args) >= 2) args[2] else "tests/reference/growth_lme4.csv"

d <- read.csv(input, na.strings = "NA", stringsAsFactors = FALSE)
d <- d[d$pattern %in% c("no_rupture", "repaired", "unrepaired") & !is.na(d$pss_sr), ]
center <- (min(d$session) + max(d$session)) / 2
d$time <- d$session - center
d$repaired <- as.numeric(d$pattern == "repaired")
d$unrepaired <- as.numeric(d$pattern == "unrepaired")

# Tight optimiser tolerances so that the reference is the optimum, not lme4's stopping point.
# (issue 12's control: the same as tests/reference/lmm_lme4.R)
ctrl <- lmerControl(optimizer = "nloptwrap",
                    optCtrl = list(ftol_abs = 1e-15, ftol_rel = 1e-15, xtol_abs = 1e-12,
                                   xtol_rel = 1e-12, maxeval = 1e5))
fit <- lmer(pss_sr ~ time * (repaired + unrepaired) + (1 + time | participant_id),
            data = d, REML = TRUE, control = ctrl)

fx <- summary(fit)$coefficients
terms <- sub("^\\(Intercept\\)$", "Intercept", rownames(fx))
fixed <- data.frame(section = "fixed", name = terms, estimate = fx[, "Estimate"],
                    se = fx[, "Std. Error"], sdcor = NA)

vc <- as.data.frame(VarCorr(fit))
strip <- function(x) sub("^\\(Intercept\\)$", "Intercept", x)
vname <- ifelse(vc$grp == "Residual", "residual",
         ifelse(is.na(vc$var2), paste0("var(", strip(vc$var1), ")"),
                paste0("cov(", strip(vc$var1), ",", strip(vc$var2), ")")))
random <- data.frame(section = "random", name = vname, estimate = vc$vcov, se = NA,
                     sdcor = vc$sdcor)

info <- data.frame(section = "fit",
                   name = c("loglik", "n_obs", "n_groups", "time_center", "reml"),
                   estimate = c(as.numeric(logLik(fit)), nobs(fit),
                                as.numeric(ngrps(fit)["participant_id"]), center, 1),
                   se = NA, sdcor = NA)

# Likelihood-ratio test of time x pattern with ML fits (same random structure).
ml_full <- update(fit, REML = FALSE)
ml_red <- lmer(pss_sr ~ time + repaired + unrepaired + (1 + time | participant_id),
               data = d, REML = FALSE, control = ctrl)
lrt <- anova(ml_red, ml_full)
lrt_rows <- data.frame(section = "lrt",
                       name = c("loglik_reduced", "loglik_full", "chi2", "df", "p",
                                "aic_reduced", "aic_full", "bic_reduced", "bic_full"),
                       estimate = c(lrt$logLik, lrt$Chisq[2], lrt$Df[2], lrt[["Pr(>Chisq)"]][2],
                                    lrt$AIC, lrt$BIC),
                       se = NA, sdcor = NA)

out <- rbind(fixed, random, info, lrt_rows)
write.csv(out, output, row.names = FALSE, na = "")
cat(sprintf("wrote %s (lme4 %s, %s)\n", output, packageVersion("lme4"), R.version.string))
if (!is.null(fit@optinfo$conv$lme4$messages)) print(fit@optinfo$conv$lme4$messages)
