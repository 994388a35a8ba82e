# expect: IB101 line 5
# expect: IB201 line 6
FROM ruby:3.3
WORKDIR /app
COPY . ./
RUN bundle install --jobs 4
CMD ["bundle", "exec", "puma"]
