# expect: IB101 line 5
# expect: IB201 line 6
FROM composer:2 AS vendor
WORKDIR /app
COPY . .
RUN composer install --no-dev --prefer-dist

FROM php:8.3-fpm
COPY --from=vendor /app /var/www/html
